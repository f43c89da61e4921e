package main

import "github.com/urfave/cli/v2"

// commands lists every subcommand; each lives in a file of its own.
func commands() []*cli.Command {
	return []*cli.Command{
		inspectCommand(),
		compressCommand(),
		evalCommand(),
		compareCommand(),
		sweepCommand(),
		exportTorchCommand(),
		importTorchCommand(),
	}
}
