package workflows

import (
	"context"
	"errors"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/testsuite"
)

// registerByName registers placeholder activities under the given names: the
// test environment mocks activities by name only once the name is registered,
// and workflows here call activities by name (their implementations live in
// package activities, which workflows must not import).
func registerByName[In, Out any](env *testsuite.TestWorkflowEnvironment, names ...string) {
	for _, name := range names {
		name := name
		env.RegisterActivityWithOptions(func(context.Context, In) (Out, error) {
			var zero Out
			return zero, errors.New("activity " + name + " is not mocked in this test")
		}, activity.RegisterOptions{Name: name})
	}
}
