package server

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/clientlimit"
)

func TestLoginStartLimitsComeFromTheConfiguration(t *testing.T) {
	t.Run("left out, the portal keeps its defaults", func(t *testing.T) {
		if got := startLimits(nil); got != nil {
			t.Errorf("startLimits(nil) = %+v, want nil (portal.DefaultStartLimits)", got)
		}
	})
	t.Run("per client and global as written", func(t *testing.T) {
		got := startLimits(&v1alpha1.ClientRateLimits{
			PerClient: v1alpha1.RateLimit{Burst: 100, Every: metav1.Duration{Duration: time.Second}},
			Global:    &v1alpha1.RateLimit{Burst: 2000, Every: metav1.Duration{Duration: 10 * time.Millisecond}},
		})
		want := clientlimit.Limits{
			PerClient: clientlimit.Rate{Every: time.Second, Burst: 100},
			Global:    clientlimit.Rate{Every: 10 * time.Millisecond, Burst: 2000},
		}
		if got == nil || *got != want {
			t.Errorf("startLimits = %+v, want %+v", got, want)
		}
	})
	t.Run("without a global bucket, only each client's", func(t *testing.T) {
		got := startLimits(&v1alpha1.ClientRateLimits{PerClient: v1alpha1.RateLimit{Burst: 5, Every: metav1.Duration{Duration: time.Second}}})
		want := clientlimit.Limits{PerClient: clientlimit.Rate{Every: time.Second, Burst: 5}}
		if got == nil || *got != want {
			t.Errorf("startLimits = %+v, want %+v", got, want)
		}
	})
}
