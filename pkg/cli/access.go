package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	loginv1alpha1 "portcullis.dev/portcullis/pkg/apis/login/v1alpha1"
)

// The access commands (request, requests, approve, deny, grants,
// revoke-grant) talk to Portcullis's API group login.portcullis.dev through
// the kubeconfig context's cluster, where it is aggregated, with the
// context's own credential (the portcullis exec plugin, usually): who may
// do what is Portcullis's decision, by its justInTime policy.

const accessAPI = "/apis/" + loginv1alpha1.GroupName + "/v1alpha1"

type accessFlags struct {
	kubeconfig, context string
}

func (f *accessFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "Kubeconfig file (default $KUBECONFIG, or ~/.kube/config).")
	fs.StringVar(&f.context, "context", "", "Kubeconfig context whose cluster serves Portcullis's API (default: the current one).")
}

// accessClient calls login.portcullis.dev through a kubeconfig context.
type accessClient struct {
	host string
	http *http.Client
	// cluster is the Portcullis cluster of the context's exec plugin
	// (its --cluster), the default of request --cluster.
	cluster string
}

func (d *Deps) newAccessClient(f *accessFlags) (*accessClient, error) {
	po := d.pathOptions(f.kubeconfig)
	raw, err := po.GetStartingConfig()
	if err != nil {
		return nil, fmt.Errorf("reading the kubeconfig: %w", err)
	}
	cc := clientcmd.NewDefaultClientConfig(*raw, &clientcmd.ConfigOverrides{CurrentContext: f.context})
	rc, err := cc.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("the kubeconfig context cannot be used (%w); give --context, or add one with `%s kubeconfig`", err, d.Name)
	}
	rc.Timeout = 30 * time.Second
	if d.Transport != nil {
		rc = rest.AnonymousClientConfig(rc)
		rc.Transport, rc.TLSClientConfig = d.Transport, rest.TLSClientConfig{}
	}
	hc, err := rest.HTTPClientFor(rc)
	if err != nil {
		return nil, err
	}
	c := &accessClient{host: strings.TrimSuffix(rc.Host, "/"), http: hc}
	name := f.context
	if name == "" {
		name = raw.CurrentContext
	}
	if ctx := raw.Contexts[name]; ctx != nil {
		if u := raw.AuthInfos[ctx.AuthInfo]; u != nil && u.Exec != nil {
			for _, a := range u.Exec.Args {
				if v, ok := strings.CutPrefix(a, "--cluster="); ok {
					c.cluster = v
				}
			}
		}
	}
	return c, nil
}

// do sends body (if any) as JSON and decodes a 2xx answer into out; any
// other answer becomes the Status message the server gave.
func (c *accessClient) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.host+accessAPI+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var st metav1.Status
		if json.Unmarshal(b, &st) == nil && st.Message != "" {
			return fmt.Errorf("%s (HTTP %d)", st.Message, resp.StatusCode)
		}
		if resp.StatusCode == http.StatusNotFound {
			return fmt.Errorf("HTTP 404: the cluster does not serve %s; is Portcullis's API aggregated there (artifacts/overlays/aggregated)?", accessAPI)
		}
		return fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

func newRequestCommand(d *Deps) *cobra.Command {
	f := &accessFlags{}
	var (
		cluster, reason string
		groups          []string
		dur             time.Duration
		noWait          bool
		waitFor, poll   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "request",
		Short: "Ask for extra groups on a cluster for a while (just-in-time access)",
		Long: `Asks for groups on a cluster for a limited time, with a reason. The cluster's
approvers decide (never you alone); once approved, your next kubectl call
carries the groups, without a new login, until the window ends.

It waits, with a progress line, until the request is decided, or returns at
once with --no-wait. It exits non-zero if the request is denied or expires.`,
		Example: `  portcullis request --cluster prod --group sre-admin --for 30m --reason "INC-123"`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := d.newAccessClient(f)
			if err != nil {
				return err
			}
			if cluster == "" {
				cluster = c.cluster
			}
			switch {
			case cluster == "":
				return errors.New("--cluster is required: name the Portcullis cluster, e.g. --cluster prod")
			case len(groups) == 0:
				return errors.New("--group is required: name a group you need, e.g. --group sre-admin")
			case dur <= 0:
				return errors.New("--for is required: say for how long, e.g. --for 30m")
			case strings.TrimSpace(reason) == "":
				return errors.New(`--reason is required: say why, e.g. --reason "INC-123"`)
			}
			in := loginv1alpha1.AccessRequest{
				TypeMeta: metav1.TypeMeta{APIVersion: loginv1alpha1.SchemeGroupVersion.String(), Kind: "AccessRequest"},
				Spec:     loginv1alpha1.AccessRequestSpec{Cluster: cluster, Groups: groups, Duration: metav1.Duration{Duration: dur}, Reason: reason},
			}
			var out loginv1alpha1.AccessRequest
			if err := c.do(cmd.Context(), http.MethodPost, "/accessrequests", &in, &out); err != nil {
				return fmt.Errorf("requesting access: %w", err)
			}
			fmt.Fprintf(d.Stdout, "Access request %s: %s on %s for %s, waiting for %d approval(s).\n", out.Name, strings.Join(groups, ","), cluster, dur, out.Status.ApprovalsRequired)
			if noWait {
				fmt.Fprintf(d.Stdout, "See it with `%s requests`; an approver runs `%s approve %s`.\n", d.Name, d.Name, out.Name)
				return nil
			}
			return d.waitDecision(cmd.Context(), c, out.Name, waitFor, poll)
		},
	}
	f.add(cmd.Flags())
	cmd.Flags().StringVar(&cluster, "cluster", "", "Portcullis cluster (default: the kubeconfig context's).")
	cmd.Flags().StringSliceVar(&groups, "group", nil, "Group to ask for (repeat, or comma-separate, for several).")
	cmd.Flags().DurationVar(&dur, "for", 0, "How long the groups are needed, from approval, e.g. 30m.")
	cmd.Flags().StringVar(&reason, "reason", "", "Why (an incident or ticket), for the approvers and the audit log.")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "Return once the request is made instead of waiting for the decision.")
	cmd.Flags().DurationVar(&waitFor, "wait-timeout", 30*time.Minute, "How long to wait for a decision (the request stays pending after).")
	cmd.Flags().DurationVar(&poll, "poll-interval", time.Second, "How often to check the request while waiting.")
	return cmd
}

// waitDecision polls the request until it leaves Pending.
func (d *Deps) waitDecision(ctx context.Context, c *accessClient, name string, timeout, poll time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	for {
		var r loginv1alpha1.AccessRequest
		err := c.do(ctx, http.MethodGet, "/accessrequests/"+url.PathEscape(name), nil, &r)
		if err != nil && ctx.Err() == nil {
			fmt.Fprintf(d.Stderr, "\rchecking %s failed (%v); retrying", name, err)
		}
		if err == nil {
			switch r.Status.Phase {
			case loginv1alpha1.AccessRequestPending:
				fmt.Fprintf(d.Stderr, "\rwaiting for approval of %s: %d/%d approvals, %s elapsed ", name, len(r.Status.Approvals), r.Status.ApprovalsRequired, time.Since(start).Round(time.Second))
			case loginv1alpha1.AccessRequestApproved:
				fmt.Fprintf(d.Stderr, "\n")
				until := ""
				if e := r.Status.ExpirationTimestamp; e != nil {
					until = " until " + e.Local().Format(time.DateTime)
				}
				fmt.Fprintf(d.Stdout, "Approved by %s: you have %s on %s%s. Your next kubectl call carries them.\n", r.Status.DecidedBy, strings.Join(r.Spec.Groups, ","), r.Spec.Cluster, until)
				return nil
			default:
				fmt.Fprintf(d.Stderr, "\n")
				by := ""
				if r.Status.DecidedBy != "" {
					by = " by " + r.Status.DecidedBy
				}
				if r.Status.DecisionReason != "" {
					by += ": " + r.Status.DecisionReason
				}
				return fmt.Errorf("access request %s was %s%s", name, strings.ToLower(string(r.Status.Phase)), by)
			}
		}
		select {
		case <-ctx.Done():
			fmt.Fprintf(d.Stderr, "\n")
			return fmt.Errorf("no decision on %s yet; it stays pending: check it later with `%s requests`", name, d.Name)
		case <-time.After(poll):
		}
	}
}

func newRequestsCommand(d *Deps) *cobra.Command {
	f := &accessFlags{}
	var all bool
	cmd := &cobra.Command{
		Use:   "requests",
		Short: "List your access requests and those waiting for your decision",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := d.newAccessClient(f)
			if err != nil {
				return err
			}
			var list loginv1alpha1.AccessRequestList
			path := "/accessrequests"
			if !all {
				path += "?fieldSelector=" + url.QueryEscape("status.phase!=Expired")
			}
			if err := c.do(cmd.Context(), http.MethodGet, path, nil, &list); err != nil {
				return fmt.Errorf("listing access requests: %w", err)
			}
			if len(list.Items) == 0 {
				fmt.Fprintln(d.Stdout, "No access requests.")
				return nil
			}
			w := tabwriter.NewWriter(d.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tUSER\tCLUSTER\tGROUPS\tFOR\tPHASE\tAPPROVALS\tREASON")
			for _, r := range list.Items {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\n", r.Name, r.Spec.Username, r.Spec.Cluster, strings.Join(r.Spec.Groups, ","),
					r.Spec.Duration.Duration, r.Status.Phase, len(r.Status.Approvals), r.Status.ApprovalsRequired, r.Spec.Reason)
			}
			return w.Flush()
		},
	}
	f.add(cmd.Flags())
	cmd.Flags().BoolVar(&all, "all", false, "Include expired requests.")
	return cmd
}

func newDecisionCommand(d *Deps, use, decision string) *cobra.Command {
	f := &accessFlags{}
	var reason string
	verb := strings.ToLower(decision)
	cmd := &cobra.Command{
		Use:   use + " REQUEST",
		Short: decision + " an access request (as one of the cluster's approvers)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := d.newAccessClient(f)
			if err != nil {
				return err
			}
			in := loginv1alpha1.AccessRequestDecision{
				TypeMeta: metav1.TypeMeta{APIVersion: loginv1alpha1.SchemeGroupVersion.String(), Kind: "AccessRequestDecision"},
				Spec:     loginv1alpha1.AccessRequestDecisionSpec{RequestName: args[0], Decision: decision, Reason: reason},
			}
			var out loginv1alpha1.AccessRequestDecision
			if err := c.do(cmd.Context(), http.MethodPost, "/accessrequestdecisions", &in, &out); err != nil {
				return fmt.Errorf("%s %s: %w", strings.TrimSuffix(verb, "e")+"ing", args[0], err)
			}
			switch out.Status.Phase {
			case loginv1alpha1.AccessRequestPending:
				fmt.Fprintf(d.Stdout, "Approved %s: %d of %d approvals; it needs more.\n", args[0], len(out.Status.Approvals), out.Status.ApprovalsRequired)
			case loginv1alpha1.AccessRequestApproved:
				fmt.Fprintf(d.Stdout, "Approved %s: the grant is active until %s.\n", args[0], out.Status.ExpirationTimestamp.Local().Format(time.DateTime))
			default:
				fmt.Fprintf(d.Stdout, "%s %s.\n", out.Status.Phase, args[0])
			}
			return nil
		},
	}
	f.add(cmd.Flags())
	cmd.Flags().StringVar(&reason, "reason", "", "What you say of your decision (shown to the requester and audited).")
	return cmd
}

func newGrantsCommand(d *Deps) *cobra.Command {
	f := &accessFlags{}
	cmd := &cobra.Command{
		Use:   "grants",
		Short: "List active time-bound grants: yours, and those of the clusters you approve for",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := d.newAccessClient(f)
			if err != nil {
				return err
			}
			var list loginv1alpha1.AccessGrantList
			if err := c.do(cmd.Context(), http.MethodGet, "/accessgrants", nil, &list); err != nil {
				return fmt.Errorf("listing grants: %w", err)
			}
			if len(list.Items) == 0 {
				fmt.Fprintln(d.Stdout, "No active grants.")
				return nil
			}
			now := d.Clock.Now()
			w := tabwriter.NewWriter(d.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tUSER\tCLUSTER\tGROUPS\tGRANTED BY\tENDS IN\tREASON")
			for _, g := range list.Items {
				left := "?"
				if e := g.Status.ExpirationTimestamp; e != nil {
					left = e.Sub(now).Round(time.Second).String()
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", g.Name, g.Spec.Username, g.Spec.Cluster, strings.Join(g.Spec.Groups, ","), g.Status.GrantedBy, left, g.Spec.Reason)
			}
			return w.Flush()
		},
	}
	f.add(cmd.Flags())
	return cmd
}

func newRevokeGrantCommand(d *Deps) *cobra.Command {
	f := &accessFlags{}
	cmd := &cobra.Command{
		Use:   "revoke-grant GRANT",
		Short: "Revoke a time-bound grant at once (yours, or one of a cluster you approve for)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := d.newAccessClient(f)
			if err != nil {
				return err
			}
			if err := c.do(cmd.Context(), http.MethodDelete, "/accessgrants/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return fmt.Errorf("revoking grant %s: %w", args[0], err)
			}
			fmt.Fprintf(d.Stdout, "Revoked grant %s.\n", args[0])
			return nil
		},
	}
	f.add(cmd.Flags())
	return cmd
}
