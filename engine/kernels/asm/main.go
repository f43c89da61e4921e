// Command asm generates the amd64 assembly of package kernels with avo.
// Run it through `go generate` in the kernels package:
//
//	go run -C asm . -out ../kernels_amd64.s -stubs ../kernels_amd64_stubs.go -pkg kernels
package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

func main() {
	ConstraintExpr("amd64,!purego")
	cpuFeatures()
	for _, k := range []struct {
		name   string
		mr, nv int
		zmm    bool
	}{
		{"AVX512x12x32", 12, 2, true},
		{"AVX512x8x32", 8, 2, true},
		{"AVX2x6x16", 6, 2, false},
	} {
		gemmKernel("gemm"+k.name+"Packed", k.mr, k.nv, k.zmm, aPacked, false, false, 0)
		gemmKernel("gemm"+k.name+"Rows", k.mr, k.nv, k.zmm, aRows, false, false, 0)
		gemmKernel("gemm"+k.name+"Cols", k.mr, k.nv, k.zmm, aCols, false, false, 0)
		gemmKernel("gemm"+k.name+"BRows", k.mr, k.nv, k.zmm, aPacked, true, false, 0)
	}
	// 16-column kernels for the last panel of C when it has at most 16
	// columns, reading the 32-column packed panel
	for _, k := range []struct {
		name string
		mr   int
	}{{"AVX512x12x16", 12}, {"AVX512x8x16", 8}} {
		gemmKernel("gemm"+k.name+"PackedEdge", k.mr, 1, true, aPacked, false, false, 32)
		gemmKernel("gemm"+k.name+"RowsEdge", k.mr, 1, true, aRows, false, false, 32)
		gemmKernel("gemm"+k.name+"ColsEdge", k.mr, 1, true, aCols, false, false, 32)
	}
	// a one-row kernel for the rows of a last partial row panel, reading
	// that packed panel (lda = its mr) or A in place
	gemmKernel("gemmAVX512x1x32Cols", 1, 2, true, aCols, false, false, 0)
	// the fused-epilogue variants (AVX-512 only: AVX2 lacks the registers)
	for _, k := range []struct {
		name string
		mr   int
	}{{"AVX512x12x32", 12}, {"AVX512x8x32", 8}} {
		gemmKernel("gemm"+k.name+"PackedEp", k.mr, 2, true, aPacked, false, true, 0)
		gemmKernel("gemm"+k.name+"RowsEp", k.mr, 2, true, aRows, false, true, 0)
		gemmKernel("gemm"+k.name+"ColsEp", k.mr, 2, true, aCols, false, true, 0)
		gemmKernel("gemm"+k.name+"BRowsEp", k.mr, 2, true, aPacked, true, true, 0)
	}
	depthwiseData()
	dwForward("dw3x3s1AVX512", 1)
	packCopy(32)
	packCopy(16)
	packTrans()
	packGather()
	segCopy(true)
	segCopy(false)
	scatterTile()
	biasActTile()
	stride2Kernel()
	dotKernel()
	axpyKernel()
	dwTiny()
	dwTinyGrad()
	dwTinyCN()
	scaleRows()
	directData()
	im2colTap(1)
	im2colTap(2)
	dwDirectForward("dw3x3DirectS1AVX512", 1, false)
	dwDirectForward("dw3x3DirectS2AVX512", 2, false)
	dwDirectForward("dw3x3DirectS1ClipAVX512", 1, true)
	dwDirectForward("dw3x3DirectS2ClipAVX512", 2, true)
	dwFlatForward("dw3x3FlatAVX512", false, false)
	dwFlatForward("dw3x3FlatClipAVX512", true, false)
	dwFlatForward("dw3x3FlatChansAVX512", false, true)
	dwFlatForward("dw3x3FlatChansClipAVX512", true, true)
	dwFlatS2Forward("dw3x3FlatS2ChansAVX512", false)
	dwFlatS2Forward("dw3x3FlatS2ChansClipAVX512", true)
	dwPairForward("dw3x3PairAVX512", false)
	dwPairForward("dw3x3PairClipAVX512", true)
	dwDirectWeightGrad("dw3x3DirectGradS1AVX512", 1)
	dwDirectWeightGrad("dw3x3DirectGradS2AVX512", 2)
	poolData()
	maxPoolDirect("maxPool3x3S1AVX512", 1)
	maxPoolDirect("maxPool3x3S2AVX512", 2)
	Generate()
}

// cpuFeatures emits the CPUID and XGETBV wrappers used for feature detection.
func cpuFeatures() {
	TEXT("cpuid", NOSPLIT, "func(leaf, sub uint32) (eax, ebx, ecx, edx uint32)")
	Doc("cpuid executes CPUID with EAX=leaf and ECX=sub.")
	Load(Param("leaf"), EAX)
	Load(Param("sub"), ECX)
	CPUID()
	Store(EAX, ReturnIndex(0))
	Store(EBX, ReturnIndex(1))
	Store(ECX, ReturnIndex(2))
	Store(EDX, ReturnIndex(3))
	RET()

	TEXT("xgetbv0", NOSPLIT, "func() (eax, edx uint32)")
	Doc("xgetbv0 reads the extended control register XCR0.")
	XORL(ECX, ECX)
	XGETBV()
	Store(EAX, ReturnIndex(0))
	Store(EDX, ReturnIndex(1))
	RET()
}

// aMode says how a GEMM micro-kernel reads its A operand.
type aMode int

const (
	aPacked aMode = iota // packed panel: mr values per k step
	aRows                // row-major A: row i at a + i*lda, k contiguous
	aCols                // transposed A: element (i, k) at a + k*lda + i
)

// gemmKernel emits a micro-kernel computing an mr x (nv vectors) tile
// C = alpha*A*B + beta*C (C is not read when beta is 0) from a packed B
// panel (nv vectors per k step) and A read as mode says; zmm selects 512-bit
// vectors (AVX-512F) instead of 256-bit ones (AVX2+FMA).
//
// With bRows, B is read in place from a row-major matrix (row p at
// b + p*ldb) instead of a packed panel; the signature then has ldb after b.
// Those (AVX-512) kernels run on wide planes (112x112, 56x56), where a
// tile's rows of B and C are far apart and many at once, more than the
// hardware prefetchers follow: they prefetch the lines of the C tile when
// they start (stored a whole k loop later) and, at every k step, the two
// lines of B the next column panel (nr columns to the right) reads. The
// first 3x3 convolution of MobileNetV1 1.0 at batch 1 and its 1x1
// convolution on 112x112 planes (K = 27 and 32) took 12-15% less (thread
// CPU minima per step, one thread); B or C alone gained less.
//
// With ep, the tile gets the GEMM epilogue before it is stored, in the
// order and with the operations of biasActTileAVX512 (so the results are
// the same bits): c = min(max(c + bias[i], lo), hi) for row i; the
// signature then ends with bias (mr values), lo and hi.
//
// bStride, when not 0, is the number of values per k step of the packed B
// panel (wider than the tile: a 16-column kernel reading a 32-column
// panel).
func gemmKernel(name string, mr, nv int, zmm bool, mode aMode, bRows, ep bool, bStride int) {
	lanes := 8
	if zmm {
		lanes = 16
	}
	nr := nv * lanes
	const unroll = 4
	sig := "func(kc int, a *float32, lda int, b, c *float32, ldc int, alpha, beta float32)"
	if bRows {
		sig = "func(kc int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32)"
	}
	doc := fmt.Sprintf("%s computes a %dx%d tile of C = alpha*A*B + beta*C.", name, mr, nr)
	if ep {
		sig = sig[:len(sig)-1] + ", bias *float32, lo, hi float32)"
		doc = fmt.Sprintf("%s computes a %dx%d tile of C = min(max(alpha*A*B + beta*C + bias, lo), hi).", name, mr, nr)
	}
	leaf(name, sig, doc)
	kc := Load(Param("kc"), GP64())
	ap := GP64()
	Load(Param("a"), ap)
	bp := Load(Param("b"), GP64())
	prefetch := bRows && zmm
	if prefetch {
		cq := Load(Param("c"), GP64())
		ldcq := loadBytes("ldc")
		for i := 0; i < mr; i++ {
			for v := 0; v < nv; v++ {
				PREFETCHT0(Mem{Base: cq, Disp: 4 * v * lanes})
			}
			if i+1 < mr {
				ADDQ(ldcq, cq)
			}
		}
	}

	// A addressing.
	var aAddr func(i, k int) Mem
	var aNext func(steps int)
	switch mode {
	case aPacked:
		aAddr = func(i, k int) Mem { return Mem{Base: ap, Disp: 4 * (k*mr + i)} }
		aNext = func(steps int) { ADDQ(U32(4*steps*mr), ap) }
	case aRows:
		lda4 := loadBytes("lda")
		lda12 := times3(lda4)
		bases := []GPVirtual{ap}
		for j := 4; j < mr; j += 4 {
			nb := GP64()
			LEAQ(Mem{Base: bases[len(bases)-1], Index: lda4, Scale: 4}, nb)
			bases = append(bases, nb)
		}
		aAddr = func(i, k int) Mem { return rowOf(Mem{Base: bases[i/4], Disp: 4 * k}, i, lda4, lda12) }
		aNext = func(steps int) {
			for _, b := range bases {
				ADDQ(U32(4*steps), b)
			}
		}
	case aCols:
		lda4 := loadBytes("lda")
		lda12 := times3(lda4)
		lda16 := GP64()
		MOVQ(lda4, lda16)
		SHLQ(Imm(2), lda16)
		aAddr = func(i, k int) Mem { return rowOf(Mem{Base: ap, Disp: 4 * i}, k, lda4, lda12) }
		aNext = func(steps int) {
			if steps == unroll {
				ADDQ(lda16, ap)
			} else {
				ADDQ(lda4, ap)
			}
		}
	}

	vec := func() VecVirtual {
		if zmm {
			return ZMM()
		}
		return YMM()
	}
	acc := make([][]VecVirtual, mr)
	for i := range acc {
		acc[i] = make([]VecVirtual, nv)
		for v := range acc[i] {
			acc[i][v] = vec()
			if zmm {
				VPXORD(acc[i][v], acc[i][v], acc[i][v])
			} else {
				VXORPS(acc[i][v], acc[i][v], acc[i][v])
			}
		}
	}
	bv := make([]VecVirtual, nv)
	for v := range bv {
		bv[v] = vec()
	}
	t := vec()
	if bStride == 0 {
		bStride = nr
	}
	bAddr := func(k, v int) Mem { return Mem{Base: bp, Disp: 4 * (k*bStride + v*lanes)} }
	bNext := func(steps int) { ADDQ(U32(4*steps*bStride), bp) }
	if bRows {
		ldb4 := loadBytes("ldb")
		ldb12 := times3(ldb4)
		bAddr = func(k, v int) Mem { return rowOf(Mem{Base: bp, Disp: 4 * v * lanes}, k, ldb4, ldb12) }
		bNext = func(steps int) {
			if steps == unroll {
				LEAQ(Mem{Base: bp, Index: ldb4, Scale: 4}, bp)
			} else {
				ADDQ(ldb4, bp)
			}
		}
	}
	step := func(k int) {
		for v := 0; v < nv; v++ {
			VMOVUPS(bAddr(k, v), bv[v])
		}
		if prefetch {
			for v := nv; v < 2*nv; v++ {
				PREFETCHT0(bAddr(k, v))
			}
		}
		for i := 0; i < mr; i++ {
			VBROADCASTSS(aAddr(i, k), t)
			for v := 0; v < nv; v++ {
				VFMADD231PS(bv[v], t, acc[i][v])
			}
		}
	}
	Label(name + "_loop")
	CMPQ(kc, Imm(unroll))
	JL(LabelRef(name + "_tail"))
	for k := 0; k < unroll; k++ {
		step(k)
	}
	aNext(unroll)
	bNext(unroll)
	SUBQ(Imm(unroll), kc)
	JMP(LabelRef(name + "_loop"))

	Label(name + "_tail")
	TESTQ(kc, kc)
	JE(LabelRef(name + "_store"))
	step(0)
	aNext(1)
	bNext(1)
	DECQ(kc)
	JMP(LabelRef(name + "_tail"))

	Label(name + "_store")
	va := vec()
	VBROADCASTSS(paramAddr("alpha"), va)
	for i := range acc {
		for v := range acc[i] {
			VMULPS(va, acc[i][v], acc[i][v])
		}
	}
	cp := Load(Param("c"), GP64())
	ldc := loadBytes("ldc")
	// eachRow calls row for the rows of the tile, stepping cp down them.
	eachRow := func(row func(i int)) {
		for i := 0; i < mr; i++ {
			row(i)
			if i+1 < mr {
				ADDQ(ldc, cp)
			}
		}
	}
	// epilogue applies the fused epilogue to row i (nothing without ep).
	epilogue := func(i int) {}
	if ep {
		biasp := Load(Param("bias"), GP64())
		vlo, vhi := clampBounds()
		epilogue = func(i int) {
			VBROADCASTSS(Mem{Base: biasp, Disp: 4 * i}, t)
			for v := 0; v < nv; v++ {
				VADDPS(t, acc[i][v], acc[i][v])
				VMAXPS(acc[i][v], vlo, acc[i][v])
				VMINPS(acc[i][v], vhi, acc[i][v])
			}
		}
	}
	betaBits := GP32()
	MOVL(paramAddr("beta"), betaBits)
	ANDL(U32(0x7fffffff), betaBits)
	JE(LabelRef(name + "_overwrite"))
	vb := vec()
	VBROADCASTSS(paramAddr("beta"), vb)
	eachRow(func(i int) {
		for v := 0; v < nv; v++ {
			VFMADD231PS(Mem{Base: cp, Disp: 4 * v * lanes}, vb, acc[i][v])
		}
		epilogue(i)
		for v := 0; v < nv; v++ {
			VMOVUPS(acc[i][v], Mem{Base: cp, Disp: 4 * v * lanes})
		}
	})
	VZEROUPPER()
	RET()
	Label(name + "_overwrite")
	eachRow(func(i int) {
		epilogue(i)
		for v := 0; v < nv; v++ {
			VMOVUPS(acc[i][v], Mem{Base: cp, Disp: 4 * v * lanes})
		}
	})
	VZEROUPPER()
	RET()
}
