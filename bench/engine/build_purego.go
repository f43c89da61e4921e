//go:build purego || !amd64

package main

// purego reports whether the kernels were built without assembly.
const purego = true
