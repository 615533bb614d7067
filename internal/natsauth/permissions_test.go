package natsauth

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestPermissionTableMatchesTheCode keeps docs/architecture.md's
// permission table the truth: its subjects per role are exactly what
// HubPermissions and ClusterPermissions grant.
func TestPermissionTableMatchesTheCode(t *testing.T) {
	data, err := os.ReadFile("../../docs/architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(data), "<!-- permissions:begin -->")
	table, _, ok2 := strings.Cut(table, "<!-- permissions:end -->")
	if !ok || !ok2 {
		t.Fatal("docs/architecture.md has no permissions table between its markers")
	}
	documented := map[string]map[string][]string{} // role → pub/sub → subjects
	role := ""
	for _, line := range strings.Split(table, "\n") {
		cells := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
		if len(cells) != 3 || strings.Contains(line, "---") || strings.TrimSpace(cells[0]) == "role" {
			continue
		}
		if r := strings.Trim(strings.TrimSpace(cells[0]), "`"); r != "" {
			role = strings.ReplaceAll(r, "`", "")
			documented[role] = map[string][]string{}
		}
		for i, dir := range []string{"pub", "sub"} {
			if subject := strings.TrimSpace(cells[i+1]); strings.HasPrefix(subject, "`") {
				documented[role][dir] = append(documented[role][dir], strings.ReplaceAll(strings.Trim(subject, "`"), "<c>", "prod-eu"))
			}
		}
	}
	cluster := ClusterPermissions("prod-eu")
	hub := HubPermissions()
	want := map[string]map[string][]string{
		"hub":         {"pub": hub.Pub.Allow, "sub": hub.Sub.Allow},
		"cluster <c>": {"pub": cluster.Pub.Allow, "sub": cluster.Sub.Allow},
	}
	for _, m := range []map[string]map[string][]string{want, documented} {
		for _, dirs := range m {
			for _, subjects := range dirs {
				slices.Sort(subjects)
			}
		}
	}
	if diff := cmp.Diff(want, documented); diff != "" {
		t.Errorf("docs/architecture.md permissions (-code +docs):\n%s", diff)
	}
	if cluster.Resp == nil || cluster.Resp.MaxMsgs != 1 || !strings.Contains(table, "replies to the requests it received, one each") {
		t.Error("a cluster answers each request it received once: the code and the table must both say so")
	}
	if len(cluster.Pub.Deny) > 0 || len(cluster.Sub.Deny) > 0 {
		t.Error("the table lists no deny rules; the code has some")
	}
}
