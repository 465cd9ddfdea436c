package helm

import (
	"fmt"
	"sort"
	"strings"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// KEDA's Go module (github.com/kedacore/keda/v2) carries every scaler's
// client library, far too much for a test that decodes two kinds. These
// types are written from KEDA's documented ScaledObject and
// TriggerAuthentication specifications (keda.sh/v1alpha1, KEDA 2.17+, where
// the temporal scaler and the fallback behaviour appeared), field for field
// with the same JSON names, so that a misspelled or unknown field fails the
// strict decode as the API server's schema would refuse it.

type scaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              scaledObjectSpec `json:"spec"`
}

type scaledObjectSpec struct {
	ScaleTargetRef        *scaleTarget         `json:"scaleTargetRef"`
	PollingInterval       *int32               `json:"pollingInterval,omitempty"`
	InitialCooldownPeriod *int32               `json:"initialCooldownPeriod,omitempty"`
	CooldownPeriod        *int32               `json:"cooldownPeriod,omitempty"`
	IdleReplicaCount      *int32               `json:"idleReplicaCount,omitempty"`
	MinReplicaCount       *int32               `json:"minReplicaCount,omitempty"`
	MaxReplicaCount       *int32               `json:"maxReplicaCount,omitempty"`
	Advanced              *scaledObjectAdvance `json:"advanced,omitempty"`
	Triggers              []scaleTrigger       `json:"triggers"`
	Fallback              *fallback            `json:"fallback,omitempty"`
}

type scaleTarget struct {
	Name                   string `json:"name"`
	APIVersion             string `json:"apiVersion,omitempty"`
	Kind                   string `json:"kind,omitempty"`
	EnvSourceContainerName string `json:"envSourceContainerName,omitempty"`
}

type scaledObjectAdvance struct {
	HorizontalPodAutoscalerConfig *struct {
		Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior,omitempty"`
		Name     string                                         `json:"name,omitempty"`
	} `json:"horizontalPodAutoscalerConfig,omitempty"`
	RestoreToOriginalReplicaCount bool `json:"restoreToOriginalReplicaCount,omitempty"`
	ScalingModifiers              *struct {
		Formula          string `json:"formula,omitempty"`
		Target           string `json:"target,omitempty"`
		ActivationTarget string `json:"activationTarget,omitempty"`
		MetricType       string `json:"metricType,omitempty"`
	} `json:"scalingModifiers,omitempty"`
}

type fallback struct {
	FailureThreshold int32  `json:"failureThreshold"`
	Replicas         int32  `json:"replicas"`
	Behavior         string `json:"behavior,omitempty"`
}

type scaleTrigger struct {
	Type              string            `json:"type"`
	Name              string            `json:"name,omitempty"`
	UseCachedMetrics  bool              `json:"useCachedMetrics,omitempty"`
	Metadata          map[string]string `json:"metadata"`
	AuthenticationRef *struct {
		Name string `json:"name"`
		Kind string `json:"kind,omitempty"`
	} `json:"authenticationRef,omitempty"`
	MetricType string `json:"metricType,omitempty"`
}

type triggerAuthentication struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		SecretTargetRef []struct {
			Parameter string `json:"parameter"`
			Name      string `json:"name"`
			Key       string `json:"key"`
		} `json:"secretTargetRef,omitempty"`
		Env []struct {
			Parameter     string `json:"parameter"`
			Name          string `json:"name"`
			ContainerName string `json:"containerName,omitempty"`
		} `json:"env,omitempty"`
	} `json:"spec"`
}

// triggerMetadata lists, per scaler the chart uses, the metadata keys KEDA's
// documentation gives (required ones first) and the parameters its
// TriggerAuthentication may supply. A key outside the list is a typo KEDA
// would ignore, leaving the scaler at its default.
var triggerMetadata = map[string]struct {
	required, optional, auth []string
}{
	"prometheus": {
		required: []string{"serverAddress", "query", "threshold"},
		optional: []string{"activationThreshold", "namespace", "customHeaders", "ignoreNullValues", "queryParameters", "unsafeSsl", "timeout"},
		auth:     []string{"bearerToken", "username", "password", "ca", "cert", "key", "customAuthHeader", "customAuthValue"},
	},
	"kafka": {
		required: []string{"bootstrapServers", "consumerGroup", "lagThreshold"},
		optional: []string{"topic", "activationLagThreshold", "offsetResetPolicy", "allowIdleConsumers", "scaleToZeroOnInvalidOffset",
			"excludePersistentLag", "limitToPartitionsWithLag", "ensureEvenDistributionOfPartitions", "version", "partitionLimitation",
			"sasl", "tls", "unsafeSsl"},
		auth: []string{"sasl", "username", "password", "tls", "ca", "cert", "key", "keyPassword"},
	},
	"temporal": {
		required: []string{"endpoint", "taskQueue", "targetQueueSize"},
		optional: []string{"endpointFromEnv", "namespace", "activationTargetQueueSize", "queueTypes", "workerDeploymentName",
			"workerDeploymentBuildId", "includeRunningWorkflowCount", "workflowTaskQueueForCount", "minConnectTimeout",
			"unsafeSsl", "tlsServerName", "enableTLS"},
		auth: []string{"apiKey", "ca", "cert", "key", "keyPassword"},
	},
}

// checkTrigger says what is wrong with a trigger's metadata.
func checkTrigger(tr scaleTrigger) error {
	known, ok := triggerMetadata[tr.Type]
	if !ok {
		return fmt.Errorf("trigger type %q is not one the chart uses (prometheus, kafka, temporal)", tr.Type)
	}
	allowed := map[string]bool{}
	for _, k := range append(append([]string(nil), known.required...), known.optional...) {
		allowed[k] = true
	}
	var unknown []string
	for k := range tr.Metadata {
		if !allowed[k] {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	if len(unknown) > 0 {
		return fmt.Errorf("%s trigger: unknown metadata %s", tr.Type, strings.Join(unknown, ", "))
	}
	for _, k := range known.required {
		if tr.Metadata[k] == "" {
			return fmt.Errorf("%s trigger: metadata %s is missing", tr.Type, k)
		}
	}
	return nil
}
