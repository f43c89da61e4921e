package main

// The PyTorch worker process of the train command.

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// torchWorker is the PyTorch side of the training comparison: a Python
// process that answers "run THREADS FORMAT SECONDS" with "ITERS SECONDS".
type torchWorker struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	stdout  *bufio.Reader
	version string
}

// startTorch starts a worker; env, when not empty, is one more
// NAME=VALUE environment variable for it.
func startTorch(python, script, model string, batch int, lr float64, env string) (*torchWorker, error) {
	cmd := exec.Command(python, script, "--model", model, "--batch", strconv.Itoa(batch), "--lr", strconv.FormatFloat(lr, 'g', -1, 64))
	cmd.Stderr = os.Stderr
	if env != "" {
		cmd.Env = append(os.Environ(), env)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s %s: %w", python, script, err)
	}
	w := &torchWorker{cmd: cmd, stdin: stdin, stdout: bufio.NewReader(stdout)}
	line, err := w.stdout.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ready ") {
		w.close()
		return nil, fmt.Errorf("PyTorch worker %s did not start (got %q, %v)", script, line, err)
	}
	w.version = strings.TrimSpace(strings.TrimPrefix(line, "ready "))
	return w, nil
}

func (w *torchWorker) run(threads int, format string, minDur time.Duration) (sample, error) {
	if _, err := fmt.Fprintf(w.stdin, "run %d %s %g\n", threads, format, minDur.Seconds()); err != nil {
		return sample{}, fmt.Errorf("PyTorch worker: %w", err)
	}
	line, err := w.stdout.ReadString('\n')
	if err != nil {
		return sample{}, fmt.Errorf("PyTorch worker: %w", err)
	}
	var iters int
	var secs, cpu float64
	if _, err := fmt.Sscanf(line, "%d %g %g", &iters, &secs, &cpu); err != nil || iters < 1 || secs <= 0 {
		return sample{}, fmt.Errorf("PyTorch worker answered %q", line)
	}
	return sample{iters: iters, wall: time.Duration(secs * 1e9), cpu: time.Duration(cpu * 1e9)}, nil
}

func (w *torchWorker) close() {
	w.stdin.Close()
	w.cmd.Wait()
}
