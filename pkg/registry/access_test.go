package registry

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/user"

	configv1alpha1 "portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/apis/login/v1alpha1"
	"portcullis.dev/portcullis/pkg/identity"
)

// accessFixture is a fixture whose prod cluster takes access requests:
// sre-admin for up to 1h, approved by sre-leads (one approval), break-glass
// by incident-commanders.
type accessFixture struct {
	*fixture
	requests  *AccessRequestREST
	decisions *AccessRequestDecisionREST
	grants    *AccessGrantREST
	events    []AccessEvent
}

func newAccessFixture(t *testing.T) *accessFixture {
	f := &accessFixture{fixture: newFixture(t)}
	f.cfg.Clusters[1].JustInTime = &configv1alpha1.JustInTimeAccess{
		RequestableGroups: []string{"sre-admin", "db-admin"},
		Approvers:         configv1alpha1.Approvers{Groups: []string{"sre-leads"}, Users: []string{"root"}},
		DirectGrantGroups: []string{"incident-commanders"},
	}
	configv1alpha1.SetDefaults(f.cfg)
	notify := func(e AccessEvent) { f.events = append(f.events, e) }
	f.requests = NewAccessRequestREST(f.store, f.config, f.clk, notify)
	f.decisions = NewAccessRequestDecisionREST(f.store, f.config, f.clk, notify)
	f.grants = NewAccessGrantREST(f.store, f.config, f.clk, notify)
	return f
}

func (f *accessFixture) request(t *testing.T, who string, groups []string, d time.Duration) *v1alpha1.AccessRequest {
	t.Helper()
	obj, err := f.requests.Create(withUser(who), &v1alpha1.AccessRequest{Spec: v1alpha1.AccessRequestSpec{
		Cluster: "prod", Groups: groups, Duration: metav1.Duration{Duration: d}, Reason: "INC-123",
	}}, nil, nil)
	if err != nil {
		t.Fatalf("creating a request as %s: %v", who, err)
	}
	return obj.(*v1alpha1.AccessRequest)
}

func (f *accessFixture) decide(ctx context.Context, name, decision string) (*v1alpha1.AccessRequestDecision, error) {
	obj, err := f.decisions.Create(ctx, &v1alpha1.AccessRequestDecision{Spec: v1alpha1.AccessRequestDecisionSpec{RequestName: name, Decision: decision, Reason: "ok"}}, nil, nil)
	if err != nil {
		return nil, err
	}
	return obj.(*v1alpha1.AccessRequestDecision), nil
}

// extraGroups is what the policy adds for user on prod now.
func (f *accessFixture) extraGroups(t *testing.T, username string) []string {
	t.Helper()
	res, err := f.authn.Policy.Load().Decide(context.Background(), "prod", &identity.Identity{Username: username}, f.store, f.clock()), error(nil)
	if err != nil {
		t.Fatal(err)
	}
	return res.ExtraGroups
}

func TestAccessRequestApprovedByAnotherApproverGrantsTheGroupsForTheWindow(t *testing.T) {
	f := newAccessFixture(t)
	req := f.request(t, "bob", []string{"sre-admin"}, 30*time.Minute)
	if req.Status.Phase != v1alpha1.AccessRequestPending || req.Spec.Username != "bob" || !strings.HasPrefix(req.Name, "ar-") {
		t.Fatalf("created request = %+v", req)
	}
	if g := f.extraGroups(t, "bob"); len(g) != 0 {
		t.Fatalf("before approval bob has extra groups %v", g)
	}
	out, err := f.decide(withUser("carol", "sre-leads"), req.Name, DecisionApprove)
	if err != nil {
		t.Fatalf("approval by an approver: %v", err)
	}
	if out.Status.Phase != v1alpha1.AccessRequestApproved || out.Status.DecidedBy != "carol" {
		t.Fatalf("after approval the status is %+v", out.Status)
	}
	if g := f.extraGroups(t, "bob"); len(g) != 1 || g[0] != "sre-admin" {
		t.Fatalf("after approval bob's extra groups are %v, want [sre-admin]", g)
	}
	list, err := f.grants.List(withUser("bob"), nil)
	if err != nil || len(list.(*v1alpha1.AccessGrantList).Items) != 1 {
		t.Fatalf("bob's grants: %v, %v", list, err)
	}
	f.advance(30 * time.Minute)
	if g := f.extraGroups(t, "bob"); len(g) != 0 {
		t.Fatalf("after the window bob still has extra groups %v", g)
	}
	got, err := f.requests.Get(withUser("bob"), req.Name, nil)
	if err != nil || got.(*v1alpha1.AccessRequest).Status.Phase != v1alpha1.AccessRequestExpired {
		t.Fatalf("after the window the request is %v (%v), want Expired", got, err)
	}
	var types []string
	for _, e := range f.events {
		types = append(types, e.Type)
	}
	if strings.Join(types, ",") != "Created,Approved" {
		t.Errorf("events = %v, want Created, Approved", types)
	}
}

func TestAccessDecisionsAreAuthorizedByThePolicyOnly(t *testing.T) {
	f := newAccessFixture(t)
	req := f.request(t, "carol", []string{"sre-admin"}, 10*time.Minute)
	tests := []struct {
		name    string
		ctx     context.Context
		want    func(error) bool
		message string
	}{
		{"the requester cannot approve their own request, approver or not", withUser("carol", "sre-leads"), apierrors.IsForbidden, "cannot approve your own request"},
		{"a user outside the approvers cannot approve", withUser("mallory", "devs"), apierrors.IsNotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.decide(tt.ctx, req.Name, DecisionApprove)
			if !tt.want(err) || !strings.Contains(errString(err), tt.message) {
				t.Fatalf("got %v", err)
			}
		})
	}
	if g := f.extraGroups(t, "carol"); len(g) != 0 {
		t.Fatalf("refused approvals granted %v", g)
	}
	// An approver by user name may deny; then nobody may approve.
	if _, err := f.decide(withUser("root"), req.Name, DecisionDeny); err != nil {
		t.Fatalf("deny by an approver: %v", err)
	}
	if _, err := f.decide(withUser("dave", "sre-leads"), req.Name, DecisionApprove); !apierrors.IsConflict(err) {
		t.Fatalf("approving a denied request: got %v, want a conflict", err)
	}
}

func TestAccessRequestsAreValidatedAgainstThePolicy(t *testing.T) {
	f := newAccessFixture(t)
	for _, tt := range []struct {
		name string
		spec v1alpha1.AccessRequestSpec
		want string
	}{
		{"a group that is not requestable", v1alpha1.AccessRequestSpec{Cluster: "prod", Groups: []string{"system:masters"}, Duration: metav1.Duration{Duration: time.Minute}, Reason: "x"}, `spec.groups[0]: Unsupported value: "system:masters"`},
		{"too long a window", v1alpha1.AccessRequestSpec{Cluster: "prod", Groups: []string{"sre-admin"}, Duration: metav1.Duration{Duration: 2 * time.Hour}, Reason: "x"}, "must not exceed 1h0m0s"},
		{"no reason", v1alpha1.AccessRequestSpec{Cluster: "prod", Groups: []string{"sre-admin"}, Duration: metav1.Duration{Duration: time.Minute}}, "spec.reason: Required value"},
		{"a cluster without a policy", v1alpha1.AccessRequestSpec{Cluster: "dev", Groups: []string{"sre-admin"}, Duration: metav1.Duration{Duration: time.Minute}, Reason: "x"}, "accepts no access requests"},
		{"asking for someone else", v1alpha1.AccessRequestSpec{Cluster: "prod", Groups: []string{"sre-admin"}, Duration: metav1.Duration{Duration: time.Minute}, Reason: "x", Username: "alice"}, "you may only ask for yourself"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.requests.Create(withUser("bob"), &v1alpha1.AccessRequest{Spec: tt.spec}, nil, nil)
			if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an invalid error saying %q", err, tt.want)
			}
		})
	}
}

func TestAccessRequestVisibility(t *testing.T) {
	f := newAccessFixture(t)
	mine := f.request(t, "bob", []string{"sre-admin"}, time.Minute)
	f.request(t, "eve", []string{"db-admin"}, time.Minute)
	count := func(ctx context.Context) int {
		l, err := f.requests.List(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		return len(l.(*v1alpha1.AccessRequestList).Items)
	}
	if n := count(withUser("bob")); n != 1 {
		t.Errorf("bob sees %d requests, want his 1", n)
	}
	if n := count(withUser("carol", "sre-leads")); n != 2 {
		t.Errorf("an approver sees %d requests, want 2", n)
	}
	if _, err := f.requests.Get(withUser("eve"), mine.Name, nil); !apierrors.IsNotFound(err) {
		t.Errorf("eve reading bob's request: got %v, want not found", err)
	}
}

func TestTwoApprovalsAreNeededWhenThePolicySaysSo(t *testing.T) {
	f := newAccessFixture(t)
	f.cfg.Clusters[1].JustInTime.ApprovalsRequired = 2 // a live reload
	req := f.request(t, "bob", []string{"sre-admin"}, time.Minute)
	out, err := f.decide(withUser("carol", "sre-leads"), req.Name, DecisionApprove)
	if err != nil || out.Status.Phase != v1alpha1.AccessRequestPending {
		t.Fatalf("first approval: %v, %v", out, err)
	}
	if _, err := f.decide(withUser("carol", "sre-leads"), req.Name, DecisionApprove); !apierrors.IsConflict(err) {
		t.Fatalf("the same approver twice: got %v, want a conflict", err)
	}
	if out, err = f.decide(withUser("root"), req.Name, DecisionApprove); err != nil || out.Status.Phase != v1alpha1.AccessRequestApproved {
		t.Fatalf("second approval: %v, %v", out, err)
	}
}

func TestRevokingAGrantEndsItAtOnce(t *testing.T) {
	f := newAccessFixture(t)
	req := f.request(t, "bob", []string{"sre-admin"}, time.Hour)
	if _, err := f.decide(withUser("carol", "sre-leads"), req.Name, DecisionApprove); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.grants.Delete(withUser("mallory"), req.Name, nil, nil); !apierrors.IsNotFound(err) {
		t.Fatalf("revocation by a stranger: got %v, want not found", err)
	}
	if _, _, err := f.grants.Delete(withUser("carol", "sre-leads"), req.Name, nil, nil); err != nil {
		t.Fatalf("revocation by an approver: %v", err)
	}
	if g := f.extraGroups(t, "bob"); len(g) != 0 {
		t.Fatalf("after revocation bob has %v", g)
	}
	got, _ := f.requests.Get(withUser("bob"), req.Name, nil)
	if p := got.(*v1alpha1.AccessRequest).Status.Phase; p != v1alpha1.AccessRequestRevoked {
		t.Fatalf("the request is %s, want Revoked", p)
	}
}

func TestDirectGrantsAreForDirectGrantersOnly(t *testing.T) {
	f := newAccessFixture(t)
	g := &v1alpha1.AccessGrant{Spec: v1alpha1.AccessGrantSpec{Username: "bob", Cluster: "prod", Groups: []string{"sre-admin"}, Duration: metav1.Duration{Duration: 5 * time.Minute}, Reason: "outage"}}
	if _, err := f.grants.Create(withUser("carol", "sre-leads"), g.DeepCopy(), nil, nil); !apierrors.IsForbidden(err) {
		t.Fatalf("a direct grant by an approver: got %v, want forbidden", err)
	}
	if _, err := f.grants.Create(withUser("ic", "incident-commanders"), g.DeepCopy(), nil, nil); err != nil {
		t.Fatalf("a direct grant by an incident commander: %v", err)
	}
	if got := f.extraGroups(t, "bob"); len(got) != 1 {
		t.Fatalf("after a direct grant bob has %v", got)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestAnApprovedRequestsGroupsComeWithEveryAuthentication(t *testing.T) {
	f := newAccessFixture(t)
	req := f.request(t, "alice", []string{"sre-admin"}, time.Minute)
	if _, err := f.decide(withUser("carol", "sre-leads"), req.Name, DecisionApprove); err != nil {
		t.Fatal(err)
	}
	res, err := f.authn.Authenticate(context.Background(), "prod", f.mint("alice", "prod", "", time.Hour, "devs"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(res.User.GetGroups(), "sre-admin") {
		t.Fatalf("groups = %v, want sre-admin added by the grant", res.User.GetGroups())
	}
	f.advance(time.Minute)
	if res, _ = f.authn.Authenticate(context.Background(), "prod", f.mint("alice", "prod", "", time.Hour, "devs")); res != nil && slices.Contains(res.User.GetGroups(), "sre-admin") {
		t.Fatalf("after the window groups = %v", res.User.GetGroups())
	}
}

func TestDecidableListsWhatTheCallerMayDecide(t *testing.T) {
	f := newAccessFixture(t)
	svc := NewAccessService(f.store, f.config, f.clk, nil)
	f.request(t, "bob", []string{"sre-admin"}, time.Minute)
	f.request(t, "carol", []string{"sre-admin"}, time.Minute)
	count := func(name string, groups ...string) int {
		list, err := svc.Decidable(context.Background(), &user.DefaultInfo{Name: name, Groups: groups})
		if err != nil {
			t.Fatal(err)
		}
		return len(list)
	}
	if n := count("carol", "sre-leads"); n != 1 {
		t.Errorf("carol (an approver) may decide %d requests, want 1: bob's, not her own", n)
	}
	if n := count("mallory", "devs"); n != 0 {
		t.Errorf("a stranger may decide %d requests", n)
	}
	f.advance(AccessRequestPendingTimeout)
	if n := count("root"); n != 0 {
		t.Errorf("after the pending timeout %d requests are still decidable", n)
	}
}
