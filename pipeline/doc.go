// Package pipeline owns lprconv's compress flow, one function with one
// options struct:
//
//	plan (rank rule or budget, residual, layer selection)
//	  -> data-aware initialization (fit factors to calibration activations)
//	  -> rewrite (convert.Apply)
//	  -> fine-tuning (distillation from the original)
//	  -> verification (fidelity and accuracy against the original)
//	  -> save
//
// Run does one compression; `lprconv compress` maps its flags to Options
// and prints the Result, and package sweep calls Run once per
// configuration, passing caches (Calibration, Sensitivities, a recorded
// reference) that configurations of the same model share. Progress is
// reported through Options.Progress and every stage stops when the
// context is cancelled.
//
// The stages' work is done by convert (plan, rewrite), rankalloc
// (budgets), finetune (initialization, distillation), evaluate
// (verification) and onnxio (save); this package only sequences them and
// parses no flags.
package pipeline
