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
