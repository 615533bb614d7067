package reconcile

import (
	"context"
	"slices"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/flotilla-dev/flotilla/agent/apply"
	"github.com/flotilla-dev/flotilla/agent/rollouts"
	"github.com/flotilla-dev/flotilla/internal/ignore"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// respectIgnored checks spec.ignoreDifferences and gives objs the live
// values of the fields the rollouts controller sets (a Service's
// pod-template hash), and with RespectIgnoreDifferences=true of every
// field it ignores, so the sync leaves them alone. It returns the entries
// that match no object, as warnings.
func (s *Syncer) respectIgnored(ctx context.Context, spec syncSpec, objs []*unstructured.Unstructured) ([]string, error) {
	rules, err := ignore.Compile(spec.ignore)
	if err != nil {
		return nil, err
	}
	all, respect, err := ignoreRules(spec, objs)
	if err != nil {
		return nil, err
	}
	if spec.options.respectIgnoreDifferences {
		respect = all
	}
	var matched []*unstructured.Unstructured
	for _, o := range objs {
		if respect.Match(o) {
			matched = append(matched, o)
		}
	}
	if len(matched) > 0 {
		live, err := s.deps.Cluster.Live(ctx, matched)
		if err != nil {
			return nil, err
		}
		for _, o := range matched {
			respect.Respect(o, live[apply.RefOf(o).Key()])
		}
	}
	return rules.Unmatched(objs), nil
}

// ignoreRules are what a comparison of objs with their live state
// ignores (all: the application's ignoreDifferences and the fields the
// rollouts controller sets) and, apart, the controller's fields alone,
// which every write keeps as they are live.
func ignoreRules(spec syncSpec, objs []*unstructured.Unstructured) (all, controller *ignore.Rules, err error) {
	return ignoreRulesOf(spec, rollouts.ControllerFields(objs))
}

// ignoreRulesOf is ignoreRules with the fields the rollouts controller
// sets found before (rollouts.ControllerFields).
func ignoreRulesOf(spec syncSpec, fields []*flotillav1.IgnoreDifferences) (all, controller *ignore.Rules, err error) {
	if controller, err = ignore.Compile(fields); err != nil {
		return nil, nil, err
	}
	all, err = ignore.Compile(append(slices.Clone(spec.ignore), fields...))
	return all, controller, err
}
