package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

// flagsAnywhere lets a command take its flags after its positional
// arguments too ("lprconv inspect MODEL --json"), which urfave/cli v2 does
// not parse by itself: flags left among the arguments are set on the
// context, and action receives the remaining positional arguments.
func flagsAnywhere(cmd *cli.Command, action func(c *cli.Context, args []string) error) *cli.Command {
	cmd.Action = func(c *cli.Context) error {
		var pos []string
		args := c.Args().Slice()
		for i := 0; i < len(args); i++ {
			a := args[i]
			if a == "--" {
				pos = append(pos, args[i+1:]...)
				break
			}
			if !strings.HasPrefix(a, "-") || a == "-" {
				pos = append(pos, a)
				continue
			}
			name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
			if name == "h" || name == "help" {
				return cli.ShowSubcommandHelp(c)
			}
			f := lookupFlag(cmd, name)
			if f == nil {
				return cli.Exit(fmt.Sprintf("%s: unknown flag %s (see lprconv %s --help)", cmd.Name, a, cmd.Name), 2)
			}
			if !hasValue {
				if _, isBool := f.(*cli.BoolFlag); isBool {
					value = "true"
				} else {
					if i+1 >= len(args) {
						return cli.Exit(fmt.Sprintf("%s: flag %s needs a value", cmd.Name, a), 2)
					}
					i++
					value = args[i]
				}
			}
			// Set the primary name: urfave/cli reads a flag's value under
			// its first name, and aliases hold separate copies.
			if err := c.Set(f.Names()[0], value); err != nil {
				return cli.Exit(fmt.Sprintf("%s: flag %s: %v", cmd.Name, a, err), 2)
			}
		}
		if err := checkFlagRanges(c, cmd.Name); err != nil {
			return err
		}
		return action(c, pos)
	}
	return cmd
}

func lookupFlag(cmd *cli.Command, name string) cli.Flag {
	for _, f := range cmd.Flags {
		for _, n := range f.Names() {
			if n == name {
				return f
			}
		}
	}
	return nil
}
