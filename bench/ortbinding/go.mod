module github.com/lprconv/lprconv/bench/ortbinding

go 1.26.8

replace github.com/lprconv/lprconv => ../..

require (
	github.com/ebitengine/purego v0.11.3
	github.com/lprconv/lprconv v0.0.0-00010101000000-000000000000
	github.com/yalue/onnxruntime_go v1.27.0
)
