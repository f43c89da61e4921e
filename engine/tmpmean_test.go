package engine

import (
	"fmt"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/lprconv/lprconv/onnxio"
)

func TestTmpMeans(t *testing.T) {
	path := os.Getenv("TMP_MODEL")
	if path == "" {
		t.Skip()
	}
	m, err := onnxio.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	shape := []int{1, 3, 224, 224}
	name := m.Graph.Input[0].Name
	p := mustCompile(t, m, Options{Threads: 1, InputShapes: map[string][]int{name: shape}})
	in := map[string]*Tensor{name: randTensor(rand.New(rand.NewPCG(1, 1)), shape...)}
	times, err := p.ProfileSteps(in, 300)
	if err != nil {
		t.Fatal(err)
	}
	var tot float64
	for _, s := range times {
		tot += float64(s.Time.Microseconds())
		fmt.Printf("%3d %-18s %v %8.1f\n", s.Index, s.OpType, s.Shape, float64(s.Time.Nanoseconds())/1000)
	}
	fmt.Println("total us", tot)
}
