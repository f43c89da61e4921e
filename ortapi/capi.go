package ortapi

import (
	"fmt"
	"unsafe"
)

// The C API of ONNX Runtime is one exported function, OrtGetApiBase, that
// returns a struct of two function pointers {GetApi, GetVersionString};
// GetApi(version) returns the OrtApi struct, a table of function pointers
// that only ever grows at its end, so the positions below hold for every
// library at or above the version in which each entry appeared (all of them
// appeared in ORT_API_VERSION 1..7).
const (
	fnGetErrorCode                    = 1
	fnGetErrorMessage                 = 2
	fnCreateEnv                       = 3
	fnCreateSession                   = 7
	fnCreateSessionFromArray          = 8
	fnRun                             = 9
	fnCreateSessionOptions            = 10
	fnSetOptimizedModelFilePath       = 11
	fnEnableProfiling                 = 14
	fnSetSessionGraphOptimizationLvl  = 23
	fnSetIntraOpNumThreads            = 24
	fnSetInterOpNumThreads            = 25
	fnSessionGetInputCount            = 30
	fnSessionGetOutputCount           = 31
	fnSessionGetInputTypeInfo         = 33
	fnSessionGetOutputTypeInfo        = 34
	fnSessionGetInputName             = 36
	fnSessionGetOutputName            = 37
	fnCreateTensorAsOrtValue          = 48
	fnGetTensorMutableData            = 51
	fnCastTypeInfoToTensorInfo        = 55
	fnGetTensorElementType            = 60
	fnGetDimensionsCount              = 61
	fnGetDimensions                   = 62
	fnGetTensorShapeElementCount      = 64
	fnGetTensorTypeAndShape           = 65
	fnAllocatorFree                   = 76
	fnGetAllocatorWithDefaultOptions  = 78
	fnReleaseEnv                      = 92
	fnReleaseStatus                   = 93
	fnReleaseSession                  = 95
	fnReleaseValue                    = 96
	fnReleaseTypeInfo                 = 98
	fnReleaseTensorTypeAndShapeInfo   = 99
	fnReleaseSessionOptions           = 100
	apiTableLen                       = 101 // entries copied from the table: every index above is below it
	apiVersion                        = 24  // ORT_API_VERSION requested from GetApi: ONNX Runtime 1.24
	minMinor                          = 24  // oldest supported release is 1.minMinor
	loggingLevelError                 = 3   // ORT_LOGGING_LEVEL_ERROR
	elemFloat, elemUint8, elemInt8    = 1, 2, 3
	elemUint16, elemInt16, elemInt32  = 4, 5, 6
	elemInt64, elemBool, elemDouble   = 7, 9, 11
	elemUint32, elemUint64            = 12, 13
	graphOptDisable, graphOptBasic    = 0, 1
	graphOptExtended, graphOptEnabled = 2, 99
)

// api is the copied OrtApi function table.
type api [apiTableLen]uintptr

// ptr reinterprets an address returned by C as an unsafe.Pointer. The
// memory it points to is owned by ONNX Runtime, never by Go's collector.
func ptr(u uintptr) unsafe.Pointer {
	return *(*unsafe.Pointer)(unsafe.Pointer(&u))
}

// goString copies the NUL-terminated C string at p.
func goString(p uintptr) string {
	if p == 0 {
		return ""
	}
	n := 0
	for *(*byte)(unsafe.Add(ptr(p), n)) != 0 {
		n++
	}
	return string(unsafe.Slice((*byte)(ptr(p)), n))
}

// cString returns s as a NUL-terminated byte slice for C.
func cString(s string) []byte {
	b := make([]byte, len(s)+1)
	copy(b, s)
	return b
}

// call calls entry fn of the table with args and turns a non-NULL OrtStatus
// into an error (releasing the status). Pointer arguments must be written
// as uintptr(unsafe.Pointer(p)) in the call itself, so that uintptrescapes
// keeps them alive and in place for the call's duration.
//
//go:uintptrescapes
func (a *api) call(fn int, args ...uintptr) error {
	st, _, _ := syscallN(a[fn], args...)
	if st == 0 {
		return nil
	}
	return a.statusError(st)
}

// statusError converts and releases the OrtStatus st.
func (a *api) statusError(st uintptr) error {
	code, _, _ := syscallN(a[fnGetErrorCode], st)
	msg, _, _ := syscallN(a[fnGetErrorMessage], st)
	err := &Error{Code: int(int32(code)), Message: goString(msg)}
	syscallN(a[fnReleaseStatus], st)
	return err
}

// release calls the Release function fn on p when p is not NULL.
func (a *api) release(fn int, p uintptr) {
	if p != 0 {
		syscallN(a[fn], p)
	}
}

// Error is an error reported by ONNX Runtime (an OrtStatus).
type Error struct {
	// Code is ONNX Runtime's OrtErrorCode (1 FAIL, 2 INVALID_ARGUMENT,
	// 3 NO_SUCHFILE, 4 NO_MODEL, 5 ENGINE_ERROR, 6 RUNTIME_EXCEPTION,
	// 7 INVALID_PROTOBUF, 8 MODEL_LOADED, 9 NOT_IMPLEMENTED,
	// 10 INVALID_GRAPH, 11 EP_FAIL).
	Code int
	// Message is ONNX Runtime's message.
	Message string
}

// Error returns the message with the error code.
func (e *Error) Error() string {
	return fmt.Sprintf("ONNX Runtime error %d: %s", e.Code, e.Message)
}
