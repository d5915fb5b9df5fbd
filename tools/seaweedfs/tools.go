//go:build tools

// Package seaweedfs pins the module whose weed command obtain.sh builds.
package seaweedfs

import _ "github.com/seaweedfs/seaweedfs/weed"
