package app

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	cliflag "k8s.io/component-base/cli/flag"
	"k8s.io/component-base/term"
)

// flagSections remembers, per command, its flags grouped by concern. A
// command that registered none (cobra's own help and completion commands)
// shows its local flags as one group.
type flagSections map[*cobra.Command]cliflag.NamedFlagSets

// add gives cmd the flags of fss, in their groups, and remembers the groups
// for its help.
func (s flagSections) add(cmd *cobra.Command, fss cliflag.NamedFlagSets) {
	for _, name := range fss.Order {
		cmd.Flags().AddFlagSet(fss.FlagSets[name])
	}
	s[cmd] = fss
}

// markRequired marks flags required with cobra's own mechanism: cobra
// refuses to run the command without them, naming every missing one in
// the flags' sorted order, and the help says "Required." in their usage.
func markRequired(cmd *cobra.Command, names ...string) {
	for _, n := range names {
		if err := cmd.MarkFlagRequired(n); err != nil {
			// A programming error: the flag is not defined.
			panic(fmt.Sprintf("%s: marking --%s required: %v", cmd.CommandPath(), n, err))
		}
	}
}

// install sets the usage and help of root and, through cobra's inheritance,
// of every subcommand: each prints its own description, its subcommands and
// its own flags grouped by section (as kube-apiserver's help does with
// cliflag.PrintSections), then the global flags it inherits. Without this,
// cliflag.SetUsageAndHelpFunc on the root would show the server's flags for
// every subcommand.
func (s flagSections) install(root *cobra.Command) {
	root.SetUsageFunc(func(c *cobra.Command) error {
		s.usage(c.OutOrStderr(), c)
		return nil
	})
	root.SetHelpFunc(func(c *cobra.Command, _ []string) {
		w := c.OutOrStdout()
		desc := c.Long
		if desc == "" {
			desc = c.Short
		}
		if desc != "" {
			fmt.Fprintf(w, "%s\n\n", strings.TrimSpace(desc))
		}
		s.usage(w, c)
	})
}

func (s flagSections) usage(w io.Writer, c *cobra.Command) {
	cols, _, _ := term.TerminalSize(w)
	fmt.Fprintf(w, "Usage:\n  %s\n", c.UseLine())
	if c.HasAvailableSubCommands() {
		fmt.Fprintf(w, "  %s [command]\n\nCommands:\n", c.CommandPath())
		for _, sub := range c.Commands() {
			if sub.IsAvailableCommand() || sub.Name() == "help" {
				fmt.Fprintf(w, "  %-*s %s\n", sub.NamePadding(), sub.Name(), sub.Short)
			}
		}
	}
	fss, sectioned := s[c]
	cliflag.PrintSections(w, fss, cols)
	// What no section holds: --help, and all local flags of a command
	// that registered no sections (cobra's help and completion), shown
	// under its own name.
	otherName := "Other"
	if !sectioned {
		otherName = c.Name()
	}
	grouped := map[string]bool{}
	for _, fs := range fss.FlagSets {
		fs.VisitAll(func(f *pflag.Flag) { grouped[f.Name] = true })
	}
	other := pflag.NewFlagSet("", pflag.ContinueOnError)
	c.LocalFlags().VisitAll(func(f *pflag.Flag) {
		if !grouped[f.Name] {
			other.AddFlag(f)
		}
	})
	printSection(w, otherName, other, cols)
	printSection(w, "Global", c.InheritedFlags(), cols)
	if c.HasAvailableSubCommands() {
		fmt.Fprintf(w, "\nUse \"%s [command] --help\" for a command's own flags.\n", c.CommandPath())
	}
}

func printSection(w io.Writer, name string, fs *pflag.FlagSet, cols int) {
	var fss cliflag.NamedFlagSets
	fss.FlagSet(name).AddFlagSet(fs)
	cliflag.PrintSections(w, fss, cols)
}
