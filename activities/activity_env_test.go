package activities

import "go.temporal.io/sdk/testsuite"

// activityEnv is a Temporal test environment that runs the activities of
// acts (their exported methods), as a worker that registered them would.
func activityEnv(acts any) *testsuite.TestActivityEnvironment {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(acts)
	return env
}
