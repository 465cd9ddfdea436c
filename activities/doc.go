// Package activities holds shopstream's side effects: one method per
// activity on a struct that holds the clients it needs, registered once with
// the worker. Method names are the activity names that package workflows
// calls.
package activities
