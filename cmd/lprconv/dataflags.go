package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/lprconv/lprconv/dataset"
	"github.com/lprconv/lprconv/evaluate"
)

// dataFlags are the flags that choose and preprocess a data set; eval,
// compare, compress (fine-tuning) and sweep share them. An IDX folder's
// test split is read by default.
func dataFlags(dataUsage string) []cli.Flag {
	return dataFlagsSplit(dataUsage, "test")
}

// dataFlagsSplit is dataFlags with another default IDX split.
func dataFlagsSplit(dataUsage, split string) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "data", Usage: dataUsage},
		&cli.StringFlag{Name: "split", Value: split, Usage: "`SPLIT` of an IDX folder holding both: train or test"},
		&cli.StringFlag{Name: "labels", Usage: "labels `FILE` for NPY images (NPY int array or one integer per line)"},
		&cli.StringFlag{Name: "mean", Usage: "per-channel `MEAN` subtracted after scaling pixels to [0,1]: one value or one per channel, comma-separated"},
		&cli.StringFlag{Name: "std", Usage: "per-channel `STD` divided by after subtracting the mean"},
		&cli.StringFlag{Name: "preset", Value: "none", Usage: "normalization preset: imagenet or none (overridden by --mean/--std)"},
		&cli.StringFlag{Name: "fit", Value: "resize", Usage: "how images of another size reach the model's: resize (bilinear), crop (centre) or pad (zeros around, e.g. 28x28 Fashion-MNIST into 32x32)"},
		&cli.IntFlag{Name: "limit", Usage: "use at most `N` samples, drawn at random (by --data-seed where the command has one) so that a folder listed class by class is sampled evenly (0: all)"},
	}
}

// dataSpec is what the data flags say.
type dataSpec struct {
	Path, Split, Labels string
	Pre                 dataset.Preprocess
	Limit               int
}

// dataSpecFrom reads the data flags and fits the preprocessing to the
// model's input.
func dataSpecFrom(c *cli.Context, in evaluate.Input) (dataSpec, error) {
	s := dataSpec{Path: c.String("data"), Split: c.String("split"), Labels: c.String("labels"), Limit: c.Int("limit")}
	if s.Limit < 0 {
		return s, fmt.Errorf("--limit %d: must be 0 or more", s.Limit)
	}
	mean, std, err := dataset.Preset(c.String("preset"))
	if err != nil {
		return s, fmt.Errorf("--preset: %w", err)
	}
	if v := c.String("mean"); v != "" {
		if mean, err = dataset.ParseFloatList(v); err != nil {
			return s, fmt.Errorf("--mean %q: %w", v, err)
		}
	}
	if v := c.String("std"); v != "" {
		if std, err = dataset.ParseFloatList(v); err != nil {
			return s, fmt.Errorf("--std %q: %w", v, err)
		}
	}
	fit, err := dataset.ParseFit(c.String("fit"))
	if err != nil {
		return s, fmt.Errorf("--fit: %w", err)
	}
	s.Pre = dataset.Preprocess{Channels: in.Channels, Height: in.Height, Width: in.Width, Fit: fit, Mean: mean, Std: std}
	if err := s.Pre.Validate(); err != nil {
		return s, fmt.Errorf("preprocessing for input %q: %w", in.Name, err)
	}
	return s, nil
}

// limitSeed draws the --limit samples of commands without --data-seed.
const limitSeed = 1

// open opens the data set and a loader over it in file order: all of it,
// or --limit samples drawn at random (seed limitSeed; eval, compare and
// quantize have no --data-seed) so that a folder of class subfolders is
// not cut to its first classes. The caller closes both.
func (s dataSpec) open(batch int) (dataset.Source, *dataset.Loader, error) {
	src, err := dataset.Open(s.Path, dataset.OpenOptions{Split: s.Split, Labels: s.Labels})
	if err != nil {
		return nil, nil, err
	}
	idx := dataset.Indices(src.Len())
	if s.Limit > 0 {
		idx = dataset.Random(idx, s.Limit, limitSeed)
	}
	l, err := dataset.NewLoader(src, idx, s.Pre, dataset.LoaderOptions{BatchSize: batch, Workers: dataset.DefaultWorkers, Prefetch: dataset.DefaultPrefetch})
	if err != nil {
		src.Close()
		return nil, nil, err
	}
	return src, l, nil
}
