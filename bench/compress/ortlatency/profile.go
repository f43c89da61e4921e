package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/lprconv/lprconv/ortapi"
)

// profileModels runs each model runs times per batch size with ONNX
// Runtime's profiler on and prints, per operator type of the optimized
// graph, the node time per run in milliseconds and its share.
func profileModels(rt *ortapi.Runtime, paths []string, bs []int64, runs, topNodes int, tmp string) error {
	for _, b := range bs {
		for i, p := range paths {
			prefix := filepath.Join(tmp, fmt.Sprintf("prof%d_%d", i, b))
			byOp, byNode, total, err := profileOne(rt, p, b, runs, prefix)
			if err != nil {
				return err
			}
			type kv struct {
				op string
				us float64
			}
			var ops []kv
			for op, us := range byOp {
				ops = append(ops, kv{op, us})
			}
			slices.SortFunc(ops, func(a, b kv) int {
				if a.us > b.us {
					return -1
				}
				if a.us < b.us {
					return 1
				}
				return strings.Compare(a.op, b.op)
			})
			fmt.Printf("profile %s batch %d: nodes %.2f ms/run:", filepath.Base(p), b, total/1000)
			for _, o := range ops {
				fmt.Printf(" %s %.2f (%.0f%%)", o.op, o.us/1000, 100*o.us/total)
			}
			fmt.Println()
			printTop(byNode, topNodes, total)
		}
	}
	return nil
}

// printTop prints the k nodes that took the most time.
func printTop(byNode map[string]float64, k int, total float64) {
	names := make([]string, 0, len(byNode))
	for n := range byNode {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int {
		if byNode[a] > byNode[b] {
			return -1
		}
		if byNode[a] < byNode[b] {
			return 1
		}
		return strings.Compare(a, b)
	})
	for _, n := range names[:min(k, len(names))] {
		fmt.Printf("  %8.2f ms %5.1f%%  %s\n", byNode[n]/1000, 100*byNode[n]/total, n)
	}
}

// profileOne returns the node time per run (µs) by operator type, by node
// (named "op name") and in all.
func profileOne(rt *ortapi.Runtime, path string, batch int64, runs int, prefix string) (map[string]float64, map[string]float64, float64, error) {
	s, err := rt.NewSessionFromFile(path, ortapi.Options{IntraOpThreads: 1, ProfilePrefix: prefix})
	if err != nil {
		return nil, nil, 0, err
	}
	in := map[string]ortapi.Tensor{}
	for _, info := range s.Inputs() {
		shape := slices.Clone(info.Shape)
		n := int64(1)
		for k, d := range shape {
			if d < 0 {
				shape[k] = batch
				if k > 0 {
					shape[k] = 1
				}
			}
			n *= shape[k]
		}
		data := make([]float32, n)
		for k := range data {
			data[k] = float32(k%251)/251 - 0.5
		}
		in[info.Name] = ortapi.Tensor{Shape: shape, Data: data}
	}
	for k := 0; k < runs+2; k++ {
		if _, err := s.Run(in, nil); err != nil {
			s.Close()
			return nil, nil, 0, err
		}
	}
	if err := s.Close(); err != nil {
		return nil, nil, 0, err
	}
	files, _ := filepath.Glob(prefix + "*.json")
	if len(files) == 0 {
		return nil, nil, 0, fmt.Errorf("%s: ONNX Runtime wrote no profile", path)
	}
	data, err := os.ReadFile(files[len(files)-1])
	if err != nil {
		return nil, nil, 0, err
	}
	var events []struct {
		Cat  string  `json:"cat"`
		Name string  `json:"name"`
		Dur  float64 `json:"dur"`
		Args struct {
			OpName string `json:"op_name"`
		} `json:"args"`
	}
	if err := json.Unmarshal(data, &events); err != nil {
		return nil, nil, 0, fmt.Errorf("profile %s: %w", files[len(files)-1], err)
	}
	// Every run's node events; the first two runs are warm-up.
	perRun := map[string][]float64{}
	for _, e := range events {
		if e.Cat == "Node" && strings.HasSuffix(e.Name, "_kernel_time") {
			perRun[e.Name] = append(perRun[e.Name], e.Dur)
		}
	}
	byOp, byNode := map[string]float64{}, map[string]float64{}
	var total float64
	for _, e := range events {
		if e.Cat != "Node" || !strings.HasSuffix(e.Name, "_kernel_time") {
			continue
		}
		durs := perRun[e.Name]
		if len(durs) <= 2 {
			continue
		}
		// Count each node once: the mean of its timed runs.
		var sum float64
		for _, d := range durs[2:] {
			sum += d
		}
		mean := sum / float64(len(durs)-2)
		byOp[e.Args.OpName] += mean
		byNode[e.Args.OpName+" "+strings.TrimSuffix(e.Name, "_kernel_time")] += mean
		total += mean
		perRun[e.Name] = nil
	}
	return byOp, byNode, total, nil
}
