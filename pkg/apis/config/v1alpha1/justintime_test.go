package v1alpha1

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func jit() *JustInTimeAccess {
	return &JustInTimeAccess{
		RequestableGroups: []string{"sre-admin"},
		MaxDuration:       metav1.Duration{Duration: time.Hour},
		Approvers:         Approvers{Groups: []string{"sre-leads"}},
		ApprovalsRequired: 1,
	}
}

func TestJustInTimeValidation(t *testing.T) {
	f := newFiles(t)
	tests := []struct {
		name   string
		mutate func(j *JustInTimeAccess)
		want   []want
	}{
		{"a valid policy passes", func(j *JustInTimeAccess) {}, nil},
		{"requestable groups are required", func(j *JustInTimeAccess) { j.RequestableGroups = nil }, []want{{"clusters[0].justInTime.requestableGroups", "Required value: list the groups"}}},
		{"system groups cannot be granted", func(j *JustInTimeAccess) { j.RequestableGroups = []string{"system:masters"} }, []want{{"clusters[0].justInTime.requestableGroups[0]", "cannot be granted: bind the permissions"}}},
		{"empty groups are refused", func(j *JustInTimeAccess) { j.RequestableGroups = []string{"a", " "} }, []want{{"clusters[0].justInTime.requestableGroups[1]", "cannot be empty"}}},
		{"duplicate groups are refused", func(j *JustInTimeAccess) { j.RequestableGroups = []string{"a", "a"} }, []want{{"clusters[0].justInTime.requestableGroups[1]", "Duplicate value"}}},
		{"a negative maximum duration is refused", func(j *JustInTimeAccess) { j.MaxDuration.Duration = -time.Minute }, []want{{"clusters[0].justInTime.maxDuration", "must be positive"}}},
		{"a maximum duration above a week is refused", func(j *JustInTimeAccess) { j.MaxDuration.Duration = 8 * 24 * time.Hour }, []want{{"clusters[0].justInTime.maxDuration", "must not exceed 168h0m0s"}}},
		{"approvers are required", func(j *JustInTimeAccess) { j.Approvers = Approvers{} }, []want{{"clusters[0].justInTime.approvers", "Required value: name who may approve"}}},
		{"an empty approver is refused", func(j *JustInTimeAccess) { j.Approvers.Users = []string{""} }, []want{{"clusters[0].justInTime.approvers.users[0]", "cannot be empty"}}},
		{"a system approver group is refused", func(j *JustInTimeAccess) { j.Approvers.Groups = []string{"system:masters"} }, []want{{"clusters[0].justInTime.approvers.groups[0]", "not asserted by identity providers"}}},
		{"a negative approval count is refused", func(j *JustInTimeAccess) { j.ApprovalsRequired = -1 }, []want{{"clusters[0].justInTime.approvalsRequired", "must be at least 1"}}},
		{"too many approvals are refused", func(j *JustInTimeAccess) { j.ApprovalsRequired = 11 }, []want{{"clusters[0].justInTime.approvalsRequired", "must be at most 10"}}},
		{"more approvals than approvers are refused", func(j *JustInTimeAccess) {
			j.Approvers = Approvers{Users: []string{"ann", "bob"}}
			j.ApprovalsRequired = 3
		}, []want{{"clusters[0].justInTime.approvalsRequired", "only 2 approver users are listed"}}},
		{"a system direct-grant group is refused", func(j *JustInTimeAccess) { j.DirectGrantGroups = []string{"system:masters"} }, []want{{"clusters[0].justInTime.directGrantGroups[0]", "not asserted by identity providers"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid(f)
			c.Clusters[0].JustInTime = jit()
			tt.mutate(c.Clusters[0].JustInTime)
			checkErrors(t, Validate(c), tt.want...)
		})
	}
}

func TestJustInTimeDefaults(t *testing.T) {
	c := &PortcullisConfiguration{Clusters: []Cluster{{Name: "prod", JustInTime: &JustInTimeAccess{RequestableGroups: []string{"sre-admin"}}}}}
	SetDefaults(c)
	j := c.Clusters[0].JustInTime
	if j.MaxDuration.Duration != time.Hour || j.ApprovalsRequired != 1 || j.AllowSelfApproval {
		t.Errorf("defaults = maxDuration %s, approvalsRequired %d, allowSelfApproval %v; want 1h, 1, false", j.MaxDuration.Duration, j.ApprovalsRequired, j.AllowSelfApproval)
	}
}

func TestNotificationWebhookValidation(t *testing.T) {
	f := newFiles(t)
	for _, tt := range []struct {
		name string
		hook NotificationWebhook
		want []want
	}{
		{"an https URL with a CA passes", NotificationWebhook{URL: "https://chat.example.com/hook", CertificateAuthorityFile: f.ca}, nil},
		{"a URL is required", NotificationWebhook{}, []want{{"notifications.webhook.url", "Required value"}}},
		{"plain http is refused", NotificationWebhook{URL: "http://chat.example.com/hook"}, []want{{"notifications.webhook.url", "https"}}},
		{"too many attempts are refused", NotificationWebhook{URL: "https://chat.example.com/hook", MaxAttempts: 11}, []want{{"notifications.webhook.maxAttempts", "between 1 and 10"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := valid(f)
			hook := tt.hook
			c.Notifications = &NotificationsConfig{Webhook: &hook}
			checkErrors(t, Validate(c), tt.want...)
		})
	}
}
