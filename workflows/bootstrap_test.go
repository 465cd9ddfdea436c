package workflows

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/suite"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
)

type bootstrapSuite struct {
	suite.Suite
	testsuite.WorkflowTestSuite
	env *testsuite.TestWorkflowEnvironment
}

func TestBootstrapSuite(t *testing.T) { suite.Run(t, new(bootstrapSuite)) }

func (s *bootstrapSuite) SetupTest() { s.env = s.newEnv() }

func (s *bootstrapSuite) newEnv() *testsuite.TestWorkflowEnvironment {
	env := s.NewTestWorkflowEnvironment()
	registerByName[EnsureTopicsInput, StepResult](env, ActivityEnsureTopics)
	registerByName[RegisterSchemasInput, StepResult](env, ActivityRegisterSchemas)
	registerByName[ApplyConnectorsInput, StepResult](env, ActivityApplyConnectors)
	registerByName[ApplyKsqlInput, StepResult](env, ActivityApplyKsqlMigrations)
	return env
}

func (s *bootstrapSuite) AfterTest(_, _ string) { s.env.AssertExpectations(s.T()) }

func validInput() BootstrapInput {
	return BootstrapInput{
		Topics:  EnsureTopicsInput{Topics: []TopicSpec{{Name: "shop_products", Partitions: 3, ReplicationFactor: 1}}},
		Schemas: RegisterSchemasInput{Schemas: []SchemaSpec{{Subject: "shop_products-value", Kind: "Product"}}},
	}
}

func (s *bootstrapSuite) TestRunsEveryStepInOrder() {
	var order []string
	s.env.OnActivity(ActivityEnsureTopics, mock.Anything, mock.Anything).Return(func(context.Context, EnsureTopicsInput) (StepResult, error) {
		order = append(order, ActivityEnsureTopics)
		return StepResult{Items: []ItemResult{{Name: "shop_products", Outcome: OutcomeCreated}}}, nil
	}).Once()
	s.env.OnActivity(ActivityRegisterSchemas, mock.Anything, mock.Anything).Return(func(context.Context, RegisterSchemasInput) (StepResult, error) {
		order = append(order, ActivityRegisterSchemas)
		return StepResult{Items: []ItemResult{{Name: "shop_products-value", Outcome: OutcomeUnchanged}}}, nil
	}).Once()
	s.env.OnActivity(ActivityApplyConnectors, mock.Anything, mock.Anything).Return(func(context.Context, ApplyConnectorsInput) (StepResult, error) {
		order = append(order, ActivityApplyConnectors)
		return StepResult{Skipped: "KAFKA_CONNECT_URL not set"}, nil
	}).Once()
	s.env.OnActivity(ActivityApplyKsqlMigrations, mock.Anything, mock.Anything).Return(func(context.Context, ApplyKsqlInput) (StepResult, error) {
		order = append(order, ActivityApplyKsqlMigrations)
		return StepResult{Skipped: "KSQLDB_URL not set"}, nil
	}).Once()

	s.env.ExecuteWorkflow(Bootstrap, validInput())
	s.Require().True(s.env.IsWorkflowCompleted())
	s.Require().NoError(s.env.GetWorkflowError())
	var res BootstrapResult
	s.Require().NoError(s.env.GetWorkflowResult(&res))
	s.Equal([]string{ActivityEnsureTopics, ActivityRegisterSchemas, ActivityApplyConnectors, ActivityApplyKsqlMigrations}, order)
	s.Len(res.Steps, 4)
	s.Equal(StepTopics, res.Steps[0].Step)
	s.Equal("KSQLDB_URL not set", res.Steps[3].Skipped)
	s.True(res.Changed(), "a created topic is a change")
}

func (s *bootstrapSuite) TestOnlyRunsTheChosenStepsInFixedOrder() {
	s.env.OnActivity(ActivityRegisterSchemas, mock.Anything, mock.Anything).Return(StepResult{}, nil).Once()
	s.env.OnActivity(ActivityEnsureTopics, mock.Anything, mock.Anything).Return(StepResult{
		Items: []ItemResult{{Name: "shop_products", Outcome: OutcomeUnchanged}},
	}, nil).Once()
	in := validInput()
	in.Steps = []string{StepSchemas, StepTopics}
	s.env.ExecuteWorkflow(Bootstrap, in)
	s.Require().NoError(s.env.GetWorkflowError())
	var res BootstrapResult
	s.Require().NoError(s.env.GetWorkflowResult(&res))
	s.Require().Len(res.Steps, 2)
	s.Equal(StepTopics, res.Steps[0].Step)
	s.Equal(StepSchemas, res.Steps[1].Step)
	s.False(res.Changed())
}

func (s *bootstrapSuite) TestRetriesATransientFailure() {
	calls := 0
	s.env.OnActivity(ActivityEnsureTopics, mock.Anything, mock.Anything).Return(func(context.Context, EnsureTopicsInput) (StepResult, error) {
		calls++
		if calls < 3 {
			return StepResult{}, errors.New("broker not available")
		}
		return StepResult{}, nil
	}).Times(3)
	in := validInput()
	in.Steps = []string{StepTopics}
	s.env.ExecuteWorkflow(Bootstrap, in)
	s.Require().NoError(s.env.GetWorkflowError())
	s.Equal(3, calls)
}

func (s *bootstrapSuite) TestStopsOnAnIncompatibleSchemaWithoutRetrying() {
	s.env.OnActivity(ActivityEnsureTopics, mock.Anything, mock.Anything).Return(StepResult{}, nil).Once()
	s.env.OnActivity(ActivityRegisterSchemas, mock.Anything, mock.Anything).Return(StepResult{},
		temporal.NewNonRetryableApplicationError("field price: type changed", ErrTypeIncompatibleSchema, nil)).Once()
	s.env.ExecuteWorkflow(Bootstrap, validInput())
	err := s.env.GetWorkflowError()
	s.Require().Error(err)
	s.True(hasErrType(err, ErrTypeIncompatibleSchema), "want an %s error, got %v", ErrTypeIncompatibleSchema, err)
	s.Contains(err.Error(), "field price")
}

func (s *bootstrapSuite) TestRejectsBadInputBeforeAnyStep() {
	in := validInput()
	in.Topics.Topics[0].Partitions = 0
	s.env.ExecuteWorkflow(Bootstrap, in)
	err := s.env.GetWorkflowError()
	s.Require().Error(err)
	s.Contains(err.Error(), "partitions must be at least 1")

	s.env = s.newEnv()
	in = validInput()
	in.Steps = []string{"everything"}
	s.env.ExecuteWorkflow(Bootstrap, in)
	s.Require().Error(s.env.GetWorkflowError())
	s.Contains(s.env.GetWorkflowError().Error(), `unknown bootstrap step "everything"`)
}

// hasErrType says whether any application error in err's chain has type t.
func hasErrType(err error, t string) bool {
	for ; err != nil; err = errors.Unwrap(err) {
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) && appErr.Type() == t {
			return true
		}
		if appErr != nil {
			err = appErr
		}
	}
	return false
}
