//go:build tools

// Package envtest only records the build dependency on kube-apiserver so that
// `go mod tidy` keeps it; obtain.sh builds the binaries.
package envtest

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
