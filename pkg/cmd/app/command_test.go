package app

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// run runs portcullis-server with args in-process and returns its output.
func run(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := NewServerCommand(context.Background())
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err = cmd.Execute()
	return out.String(), errOut.String(), err
}

// serverOnlyFlags are flags of the server itself that no subcommand takes.
var serverOnlyFlags = []string{"--secure-port", "--tls-cert-file", "--authentication-kubeconfig", "--shutdown-delay-duration", "--logging-format"}

func TestEachCommandsHelpShowsItsOwnFlagsAndNotTheServers(t *testing.T) {
	for _, tc := range []struct {
		command string
		want    []string
	}{
		{"mint", []string{"--user", "--reason", "--cluster", "--group", "--ttl", "--config", "Mint flags:", "Auditing (when mint opens the store itself) flags:", "--audit-log-path"}},
		{"webhook-kubeconfig", []string{"--client-certificate", "--client-key", "--cluster", "--embed-certs", "--config", "Webhook-kubeconfig flags:"}},
		{"copy-store", []string{"--from-bolt", "--config", "Copy-store flags:"}},
		{"check-config", []string{"--config", "Check-config flags:", "exit code is 0"}},
		{"version", []string{"Print the version", "--help"}},
	} {
		t.Run(tc.command+" --help shows its own flags", func(t *testing.T) {
			out, _, err := run(t, tc.command, "--help")
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("%s --help lacks %q:\n%s", tc.command, w, out)
				}
			}
			for _, f := range serverOnlyFlags {
				if strings.Contains(out, f) {
					t.Errorf("%s --help shows the server's flag %s:\n%s", tc.command, f, out)
				}
			}
		})
	}
}

func TestTheRootHelpListsEveryCommandAndTheServersFlagsGrouped(t *testing.T) {
	out, _, err := run(t, "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{
		"Commands:", "check-config", "copy-store", "mint", "version", "webhook-kubeconfig",
		"Portcullis flags:", "Secure serving flags:", "Auditing flags:", "Logs flags:", "Shutdown flags:",
		"--config", "--secure-port", "--audit-policy-file", "--logging-format",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("--help lacks %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, "--from-bolt") || strings.Contains(out, "--reason") {
		t.Errorf("the server's --help shows a subcommand's flags:\n%s", out)
	}
}

func TestMissingRequiredFlagsAreAllNamedInAStableOrder(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"mint"}, `required flag(s) "cluster", "config", "reason", "user" not set`},
		{[]string{"mint", "--user", "alice", "--config", "c.yaml"}, `required flag(s) "cluster", "reason" not set`},
		{[]string{"webhook-kubeconfig"}, `required flag(s) "client-certificate", "client-key", "config" not set`},
		{[]string{"copy-store"}, `required flag(s) "config", "from-bolt" not set`},
		{[]string{"check-config"}, `required flag(s) "config" not set`},
		{[]string{}, `required flag(s) "config" not set`},
	} {
		t.Run(strings.Join(append([]string{"portcullis-server"}, tc.args...), " "), func(t *testing.T) {
			for range 5 {
				_, _, err := run(t, tc.args...)
				if err == nil || err.Error() != tc.want {
					t.Fatalf("got error %v, want %q", err, tc.want)
				}
			}
		})
	}
}

func TestEveryRequiredFlagSaysSoInItsHelp(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if _, required := f.Annotations[cobra.BashCompOneRequiredFlag]; required && !strings.Contains(f.Usage, "Required") {
				t.Errorf("%s --%s is required but its usage does not say so: %q", c.CommandPath(), f.Name, f.Usage)
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(NewServerCommand(context.Background()))
}

func TestACommandWithoutSectionsStillShowsItsOwnFlags(t *testing.T) {
	root := NewServerCommand(context.Background())
	extra := &cobra.Command{Use: "extra", Short: "A command added without flag sections", Run: func(*cobra.Command, []string) {}}
	extra.Flags().String("only-here", "", "A flag of this command.")
	root.AddCommand(extra)
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"extra", "--help"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "Extra flags:") || !strings.Contains(out.String(), "--only-here") {
		t.Errorf("extra --help:\n%s", out.String())
	}
	for _, f := range serverOnlyFlags {
		if strings.Contains(out.String(), f) {
			t.Errorf("extra --help shows the server's flag %s", f)
		}
	}
}
