// Package engine executes ONNX graphs in float32 on the CPU, in pure Go.
//
// # Compile and run
//
// Compile turns a ModelProto into a Program for fixed input shapes:
//
//	p, err := engine.Compile(model, engine.Options{InputShapes: map[string][]int{"input": {64, 3, 224, 224}}})
//	out, err := p.Run(map[string]*engine.Tensor{"input": x})
//
// Compile rejects, with an error naming the operator, node name and index,
// every node whose operator, attribute, opset form or element type is not
// supported (see SupportedOps), so that Run never meets an unsupported op.
// It infers every shape, folds constant subgraphs (Constant, Shape, and any
// node whose inputs are all constant, e.g. Shape→Gather→Unsqueeze→Concat
// feeding a Reshape) into constants, and plans buffers: float activations
// live in one arena, and each is placed at an offset that no other
// activation alive at the same time uses, so a buffer is reused as soon as
// no later node reads it. PeakActivationBytes reports the arena size. View
// ops (Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout) share their
// input's storage. Run allocates only the copies of its outputs; Forward
// followed by Value allocates nothing.
//
// Model wraps a ModelProto and compiles (and caches) one Program per set of
// input shapes, for callers whose batch size changes. Options.ConstantInputs
// freezes graph inputs to given values (for example a shape fed as an
// input), so that what depends on them folds at Compile.
//
// Compile also fuses, exactly: a BatchNormalization after a Conv with
// constant weights is folded into the Conv's weight and bias, and (unless
// KeepForBackward is set) a Relu or Clip after a Conv runs inside it, in
// the GEMM or depthwise kernel's epilogue. Also unless KeepForBackward is
// set, the residual Add of an LPR module (see package convert), y =
// Add(Conv1x1(a), R) with R the module's input (identity), a per-channel
// scale of it (a 1x1 Conv with group = C, the diag residual) or a
// depthwise Conv of it, runs as one step: R is written into y (for the
// scale, straight into the GEMM's packed output) and the 1x1 Conv's GEMM
// accumulates into it (beta = 1), with the bias and a following Relu or
// Clip in its epilogue. A 1x1 Conv with group = C = M (not fused) runs as
// a direct per-channel scale, and group-1 1x1 Convs on planes of at most 16
// pixels (4x4) multiply all images of the batch in one GEMM. Group-1 1x1
// Convs with a constant weight on small planes that kernels.PixelMajorPays
// selects (7x7 and 14x14 with AVX-512) run pixel-major, from the weight
// packed once at Compile (kernels.PointwisePixelMajor; same bits).
// Unless KeepForBackward is set, the values between such batched 1x1
// Convs and depthwise Convs are stored channel-major across the batch
// (CNHW, layout.go), so that the batched GEMM reads and writes them in
// place instead of packing and scattering NCHW copies (same bits).
//
// A panic inside an op (a bug) is returned as an error naming the node; bad
// models are rejected at Compile. ProfileSteps measures the time of every
// step.
//
// # Tensors
//
// A Tensor is a row-major array with a Shape and a DType. Float32 data lives
// in F; Int64, Int32 and Bool data live in I (as int64).
//
// # Ops
//
// Every node compiles to a value implementing Op:
//
//	type Op interface {
//		Forward(c *Ctx, in, out []*Tensor) error
//	}
//
// An op's builder (registry.go maps operator types to builders) validates
// attributes and input shapes at Compile time, computes output shapes with
// the rules of package shapeinfer (the one static shape inference, shared
// with package convert; a new operator's shape rule goes there), and
// precomputes everything that depends only on shapes (GEMM sizes, window
// geometry, broadcast strides). Forward must write every output element
// (buffers are reused, so outputs hold stale data) and must not allocate.
// Ops that need temporary memory implement Scratcher; view ops implement
// Aliaser. The exported op types (ConvOp, BatchNormOp, PoolOp, GemmOp,
// MatMulOp, UnaryOp, BinaryOp, ...) expose their compiled geometry.
//
// # Training: parameters, tape and backward
//
// Backward passes are added op by op, in separate files (backward_*.go), by
// giving an op type a Backward method:
//
//	type Backwarder interface {
//		Backward(c *Ctx, in, out, dOut, dIn []*Tensor) error
//	}
//
// Backward receives the op's forward inputs and outputs as they were after
// Forward, the gradients dOut of its outputs (nil where none flows), and
// must ADD the gradient of each input into dIn[i] (nil where not wanted).
// The driver zeroes gradient buffers before the pass, so fan-out (a value
// read by several ops) accumulates naturally.
//
// The tape is the Program itself: compile with Options.KeepForBackward and
// the planner gives every activation its own buffer, so after Forward every
// step's In and Out tensors (Program.Steps) still hold the values of that
// pass; a backward driver walks Steps in reverse, calling Backward where
// gradients flow. Options.Trainable names initializers that stay parameters:
// they are never constant-folded (nodes reading them run at every Forward),
// and Program.Param returns their storage, which the optimizer may update in
// place between passes.
//
// # Observing activations
//
// Options.Outputs names extra values (any node output or graph input) that
// the planner keeps alive; Run returns them next to the graph outputs and
// Value reads them after Forward. The fine-tuning package uses this to
// collect the inputs of the layers it factorizes.
//
// # Threads
//
// Options.Threads (default runtime.NumCPU()) threads run the GEMM and
// depthwise kernels of package engine/kernels (op-level splitting: every
// operator is cut across the threads). A Program serializes calls to Run
// and Forward; compile one Program per goroutine for parallel use.
//
// CompileBatched adds batch-level splitting: the batch is cut into W
// slices, each run by its own Program (own activation arena, shared
// weights) on its own goroutine, and parameter gradients are reduced in a
// fixed order. A cost model chooses W per model and shape: small planes
// with many images go to batch slices (op-level splits of them cost more
// in dispatch than they save), a batch of one or a few large images keeps
// op-level splitting. Model, package evaluate and the fine-tuning loop run
// through it. Worker g starts with the same slices in every phase (their data
// stays in its core's cache); idle workers poll for their next phase for
// a short while before they block, so that the several phases of a
// training step do not each pay the operating system's wake-up latency;
// two programs run one after the other (the teacher and the student of a
// fine-tuning step) can share one set of workers (Batched.ShareWorkers),
// which also run per-item work between the passes (Batched.Parallel).
package engine
