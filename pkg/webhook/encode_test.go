package webhook

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authenticationv1beta1 "k8s.io/api/authentication/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apiserver/pkg/authentication/user"
)

// referenceAnswer is what encoding/json makes of the TokenReview types: the
// bytes appendAnswer must produce.
func referenceAnswer(t testing.TB, v1beta1 bool, name string, uid types.UID, created time.Time, oc outcome) []byte {
	meta := metav1.ObjectMeta{Name: name, UID: uid, CreationTimestamp: metav1.NewTime(created)}
	var out any
	if v1beta1 {
		st := authenticationv1beta1.TokenReviewStatus{Authenticated: oc.user != nil, Audiences: oc.audiences, Error: oc.reason}
		if u := oc.user; u != nil {
			st.User = authenticationv1beta1.UserInfo{Username: u.Name, UID: u.UID, Groups: u.Groups, Extra: convertExtra[authenticationv1beta1.ExtraValue](u.Extra)}
		}
		out = &authenticationv1beta1.TokenReview{TypeMeta: metav1.TypeMeta{APIVersion: apiVersionV1beta1, Kind: "TokenReview"}, ObjectMeta: meta, Status: st}
	} else {
		st := authenticationv1.TokenReviewStatus{Authenticated: oc.user != nil, Audiences: oc.audiences, Error: oc.reason}
		if u := oc.user; u != nil {
			st.User = authenticationv1.UserInfo{Username: u.Name, UID: u.UID, Groups: u.Groups, Extra: convertExtra[authenticationv1.ExtraValue](u.Extra)}
		}
		out = &authenticationv1.TokenReview{TypeMeta: metav1.TypeMeta{APIVersion: apiVersionV1, Kind: "TokenReview"}, ObjectMeta: meta, Status: st}
	}
	b, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// convertExtra is a user's extra in a TokenReview version's type.
func convertExtra[V ~[]string](in map[string][]string) map[string]V {
	if len(in) == 0 {
		return nil
	}
	out := make(map[string]V, len(in))
	for k, v := range in {
		out[k] = v
	}
	return out
}

func assertAnswerMatches(t *testing.T, v1beta1 bool, name string, uid types.UID, created time.Time, oc outcome) {
	t.Helper()
	apiVersion := apiVersionV1
	if v1beta1 {
		apiVersion = apiVersionV1beta1
	}
	got := appendAnswer(nil, apiVersion, name, uid, created, oc)
	want := referenceAnswer(t, v1beta1, name, uid, created, oc)
	if !bytes.Equal(got, want) {
		t.Fatalf("appendAnswer:\n%s\nencoding/json:\n%s", got, want)
	}
}

func TestAnswerEncodingMatchesEncodingJSON(t *testing.T) {
	created := time.Date(2026, 11, 27, 13, 0, 0, 123456789, time.FixedZone("x", 3600))
	users := []*user.DefaultInfo{
		nil,
		{},
		{Name: "alice@example.com"},
		{Name: "alice", UID: "u-1", Groups: []string{"devs", "system:authenticated"}},
		{Name: "bob", Groups: []string{}, Extra: map[string][]string{}},
		{Name: "carol", Extra: map[string][]string{"portcullis.dev/sid": {"s1"}, "portcullis.dev/idp": {"dex"}, "a": nil, "scopes": {"x", "y"}}},
		{Name: "dé<j>à & \"vu\"\\\n\t\u2028\x01\x7f", UID: "\xff", Groups: []string{"<script>", "ü"}, Extra: map[string][]string{"k&y": {"v>"}}},
	}
	for _, v1beta1 := range []bool{false, true} {
		for _, u := range users {
			for _, auds := range [][]string{nil, {}, {"https://kubernetes.default.svc"}, {"a", "b<"}} {
				for _, reason := range []string{"", "token expired", "bad \"token\" <x>"} {
					for _, meta := range [][2]string{{"", ""}, {"n", "3f6b0a2c"}, {"n&", "<u>"}} {
						assertAnswerMatches(t, v1beta1, meta[0], types.UID(meta[1]), created, outcome{user: u, audiences: auds, reason: reason})
					}
				}
			}
		}
	}
}

func FuzzAnswerEncoding(f *testing.F) {
	f.Add(false, "n", "u", "alice", "uid", "devs", "k", "v", "aud", "reason")
	f.Add(true, "", "", "dé<j>à", "\xff", "", "portcullis.dev/sid", "s1", "", "")
	f.Fuzz(func(t *testing.T, v1beta1 bool, name, uid, username, userUID, group, key, value, aud, reason string) {
		u := &user.DefaultInfo{Name: username, UID: userUID, Groups: []string{group}, Extra: map[string][]string{key: {value}}}
		if username == "" {
			u = nil
		}
		assertAnswerMatches(t, v1beta1, name, types.UID(uid), time.Unix(1_800_000_000, 0), outcome{user: u, audiences: []string{aud}, reason: reason})
	})
}
