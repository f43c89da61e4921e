// Package libpath finds the ONNX Runtime shared library without loading it.
//
// It is pure Go (no cgo), so that test helpers can look for the library
// without pulling the cgo bindings of package ortrun into every test binary.
package libpath

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// EnvVar names the environment variable that, when set, gives the path of
// libonnxruntime.so.1 and overrides the cache search.
const EnvVar = "ONNXRUNTIME_LIB"

// LibName is the file name of the ONNX Runtime shared library on Linux.
const LibName = "libonnxruntime.so.1"

// CacheDirs returns the folders searched, in order, for
// <dir>/<version>/libonnxruntime.so.1: /root/.cache/lprconv/ort,
// $XDG_CACHE_HOME/lprconv/ort and $HOME/.cache/lprconv/ort (duplicates
// removed).
func CacheDirs() []string {
	var dirs []string
	seen := map[string]bool{}
	add := func(base string) {
		if base == "" {
			return
		}
		d := filepath.Join(base, "lprconv", "ort")
		if !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	add("/root/.cache")
	add(os.Getenv("XDG_CACHE_HOME"))
	if home, err := os.UserHomeDir(); err == nil {
		add(filepath.Join(home, ".cache"))
	}
	return dirs
}

// Find returns the path of the ONNX Runtime shared library: the value of
// $ONNXRUNTIME_LIB when set (it must exist), otherwise the newest version
// found under CacheDirs. The error says how to install the library.
func Find() (string, error) {
	if p := os.Getenv(EnvVar); p != "" {
		st, err := os.Stat(p)
		if err != nil {
			return "", fmt.Errorf("ONNX Runtime library from $%s: %w", EnvVar, err)
		}
		if st.IsDir() {
			return "", fmt.Errorf("ONNX Runtime library from $%s: %s is a directory, want the path of %s", EnvVar, p, LibName)
		}
		return p, nil
	}
	dirs := CacheDirs()
	for _, d := range dirs {
		if p := newest(d); p != "" {
			return p, nil
		}
	}
	return "", fmt.Errorf("ONNX Runtime library not found: $%s is unset and no <version>/%s under %s; run `bash .ci/run` (it downloads onnxruntime-node 1.24.3 with npm) or set $%s",
		EnvVar, LibName, strings.Join(dirs, ", "), EnvVar)
}

// newest returns dir/<v>/LibName for the highest version v present, or "".
func newest(dir string) string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	var versions []string
	for _, e := range entries {
		p := filepath.Join(dir, e.Name(), LibName)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			versions = append(versions, e.Name())
		}
	}
	if len(versions) == 0 {
		return ""
	}
	sort.Slice(versions, func(i, j int) bool { return versionLess(versions[i], versions[j]) })
	return filepath.Join(dir, versions[len(versions)-1], LibName)
}

// versionLess orders dotted version strings numerically field by field
// ("1.9.0" < "1.24.3"); non-numeric fields compare as strings.
func versionLess(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) && i < len(bs); i++ {
		ai, errA := strconv.Atoi(as[i])
		bi, errB := strconv.Atoi(bs[i])
		if errA == nil && errB == nil {
			if ai != bi {
				return ai < bi
			}
			continue
		}
		if as[i] != bs[i] {
			return as[i] < bs[i]
		}
	}
	return len(as) < len(bs)
}
