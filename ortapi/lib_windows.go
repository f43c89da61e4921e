//go:build windows

package ortapi

import (
	"syscall"
	"unsafe"
)

// openLibrary loads the DLL at path and returns the address of its
// OrtGetApiBase.
func openLibrary(path string) (uintptr, error) {
	h, err := syscall.LoadLibrary(path)
	if err != nil {
		return 0, oneLine(err)
	}
	sym, err := syscall.GetProcAddress(h, "OrtGetApiBase")
	if err != nil {
		syscall.FreeLibrary(h)
		return 0, oneLine(err)
	}
	return sym, nil
}

// osPath returns path as ONNX Runtime's ORTCHAR_T string on Windows:
// UTF-16, NUL-terminated, as bytes.
func osPath(path string) ([]byte, error) {
	u, err := syscall.UTF16FromString(path)
	if err != nil {
		return nil, errNUL
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&u[0])), 2*len(u)), nil
}
