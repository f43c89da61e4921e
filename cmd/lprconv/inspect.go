package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/lprconv/lprconv/onnxio"
)

func inspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "show the layers, parameters and LPR candidates of a model",
		ArgsUsage: "MODEL",
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return cli.Exit("inspect: expected one MODEL argument", 2)
			}
			m, err := onnxio.Load(c.Args().First())
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "nodes: %d\n", len(m.GetGraph().GetNode()))
			return nil
		},
	}
}
