// Builds SeaweedFS's `weed` (an S3-compatible object store) from its Go module, for the S3 tests; see
// tools/envtest/obtain.sh seaweedfs. SeaweedFS's go.mod has replace lines, which `go install` refuses:
// its one real replace is repeated here.
module filecleanup.dev/seaweedfs

go 1.26.6

require github.com/seaweedfs/seaweedfs v0.0.0-20261109003541-7506e5f91cd6

replace github.com/tyler-smith/go-bip39 => github.com/cosmos/go-bip39 v1.0.0
