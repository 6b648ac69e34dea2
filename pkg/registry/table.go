package registry

import (
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"

	"portcullis.dev/portcullis/pkg/apis/login/v1alpha1"
)

// The tables are what kubectl prints without -o.

var sessionColumns = []metav1.TableColumnDefinition{
	{Name: "Name", Type: "string", Format: "name", Description: "The session ID (the sid claim of its tokens)."},
	{Name: "User", Type: "string", Description: "The Kubernetes user name."},
	{Name: "IdP", Type: "string", Description: "The identity provider the user logged in with."},
	{Name: "Client", Type: "string", Priority: 1, Description: "The address the login came from."},
	{Name: "Groups", Type: "string", Priority: 1, Description: "The user's groups."},
	{Name: "Last Used", Type: "string", Description: "Time since the last refresh."},
	{Name: "Expires", Type: "string", Description: "Time until the session ends, at the latest."},
	{Name: "Age", Type: "string", Description: "Time since login."},
}

func sessionTable(obj runtime.Object, now time.Time) (*metav1.Table, error) {
	t := &metav1.Table{ColumnDefinitions: sessionColumns}
	add := func(s *v1alpha1.Session) {
		t.Rows = append(t.Rows, metav1.TableRow{
			Object: runtime.RawExtension{Object: s},
			Cells: []any{
				s.Name, s.Spec.Username, s.Spec.IdentityProvider, s.Spec.ClientAddress,
				strings.Join(s.Spec.Groups, ","),
				since(s.Status.LastUsedTime, now), until(s.Status.ExpirationTimestamp, now),
				since(&s.CreationTimestamp, now),
			},
		})
	}
	switch o := obj.(type) {
	case *v1alpha1.Session:
		add(o)
	case *v1alpha1.SessionList:
		for i := range o.Items {
			add(&o.Items[i])
		}
		t.ResourceVersion = o.ResourceVersion
		t.Continue = o.Continue
	default:
		return nil, fmt.Errorf("cannot show a %T as a table of sessions", obj)
	}
	return t, nil
}

func tokenCredentialRequestTable(obj runtime.Object) (*metav1.Table, error) {
	r, ok := obj.(*v1alpha1.TokenCredentialRequest)
	if !ok {
		return nil, fmt.Errorf("cannot show a %T as a table of token credential requests", obj)
	}
	// The token is a credential: the table says whether there is one, and
	// -o json/yaml shows it.
	result, expires := "Issued", ""
	if r.Status.Token == "" {
		result = string(r.Status.Reason)
	}
	if r.Status.ExpirationTimestamp != nil {
		expires = r.Status.ExpirationTimestamp.UTC().Format(time.RFC3339)
	}
	return singleRow(r, []metav1.TableColumnDefinition{
		{Name: "Cluster", Type: "string"},
		{Name: "Result", Type: "string"},
		{Name: "Expires", Type: "string"},
		{Name: "Message", Type: "string"},
	}, r.Spec.Cluster, result, expires, r.Status.Message)
}

func whoAmIRequestTable(obj runtime.Object) (*metav1.Table, error) {
	r, ok := obj.(*v1alpha1.WhoAmIRequest)
	if !ok {
		return nil, fmt.Errorf("cannot show a %T as a table of who-am-I requests", obj)
	}
	u := r.Status.UserInfo
	return singleRow(r, []metav1.TableColumnDefinition{
		{Name: "Username", Type: "string"},
		{Name: "UID", Type: "string"},
		{Name: "Groups", Type: "string"},
	}, u.Username, u.UID, strings.Join(u.Groups, ","))
}

func singleRow(obj runtime.Object, cols []metav1.TableColumnDefinition, cells ...any) (*metav1.Table, error) {
	if _, err := meta.Accessor(obj); err != nil {
		return nil, err
	}
	return &metav1.Table{
		ColumnDefinitions: cols,
		Rows:              []metav1.TableRow{{Object: runtime.RawExtension{Object: obj}, Cells: cells}},
	}, nil
}

func since(t *metav1.Time, now time.Time) string {
	if t == nil || t.IsZero() {
		return "<none>"
	}
	return duration.HumanDuration(now.Sub(t.Time))
}

func until(t *metav1.Time, now time.Time) string {
	if t == nil || t.IsZero() {
		return "<none>"
	}
	return duration.HumanDuration(t.Sub(now))
}

var accessRequestColumns = []metav1.TableColumnDefinition{
	{Name: "Name", Type: "string", Format: "name", Description: "The request's name."},
	{Name: "User", Type: "string", Description: "The requester."},
	{Name: "Cluster", Type: "string", Description: "The cluster."},
	{Name: "Groups", Type: "string", Description: "The groups asked for."},
	{Name: "Duration", Type: "string", Description: "How long, from approval."},
	{Name: "Phase", Type: "string", Description: "Pending, Approved, Denied, Expired or Revoked."},
	{Name: "Approvals", Type: "string", Description: "Approvals so far, of those needed."},
	{Name: "Reason", Type: "string", Description: "Why."},
	{Name: "Age", Type: "string", Description: "Time since the request."},
}

func accessRequestTable(obj runtime.Object, now time.Time) (*metav1.Table, error) {
	t := &metav1.Table{ColumnDefinitions: accessRequestColumns}
	add := func(r *v1alpha1.AccessRequest) {
		t.Rows = append(t.Rows, metav1.TableRow{
			Object: runtime.RawExtension{Object: r},
			Cells: []any{
				r.Name, r.Spec.Username, r.Spec.Cluster, strings.Join(r.Spec.Groups, ","), r.Spec.Duration.Duration.String(),
				string(r.Status.Phase), fmt.Sprintf("%d/%d", len(r.Status.Approvals), r.Status.ApprovalsRequired), r.Spec.Reason,
				since(&r.CreationTimestamp, now),
			},
		})
	}
	switch o := obj.(type) {
	case *v1alpha1.AccessRequest:
		add(o)
	case *v1alpha1.AccessRequestList:
		for i := range o.Items {
			add(&o.Items[i])
		}
	default:
		return nil, fmt.Errorf("cannot show a %T as a table of access requests", obj)
	}
	return t, nil
}

var accessGrantColumns = []metav1.TableColumnDefinition{
	{Name: "Name", Type: "string", Format: "name", Description: "The grant's name (that of its request)."},
	{Name: "User", Type: "string", Description: "The grantee."},
	{Name: "Cluster", Type: "string", Description: "The cluster."},
	{Name: "Groups", Type: "string", Description: "The groups granted."},
	{Name: "Granted By", Type: "string", Description: "The last approver or the direct granter."},
	{Name: "Expires", Type: "string", Description: "Time until the grant ends."},
	{Name: "Reason", Type: "string", Description: "Why."},
}

func accessGrantTable(obj runtime.Object, now time.Time) (*metav1.Table, error) {
	t := &metav1.Table{ColumnDefinitions: accessGrantColumns}
	add := func(g *v1alpha1.AccessGrant) {
		t.Rows = append(t.Rows, metav1.TableRow{
			Object: runtime.RawExtension{Object: g},
			Cells: []any{
				g.Name, g.Spec.Username, g.Spec.Cluster, strings.Join(g.Spec.Groups, ","), g.Status.GrantedBy,
				until(g.Status.ExpirationTimestamp, now), g.Spec.Reason,
			},
		})
	}
	switch o := obj.(type) {
	case *v1alpha1.AccessGrant:
		add(o)
	case *v1alpha1.AccessGrantList:
		for i := range o.Items {
			add(&o.Items[i])
		}
	default:
		return nil, fmt.Errorf("cannot show a %T as a table of access grants", obj)
	}
	return t, nil
}
