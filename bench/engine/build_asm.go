//go:build amd64 && !purego

package main

// purego reports whether the kernels were built without assembly.
const purego = false
