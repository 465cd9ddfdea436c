package helm

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

// object is one rendered manifest, decoded strictly into its Go type.
type object struct {
	APIVersion, Kind, Name string
	// Source is the template that rendered it (the "# Source:" comment).
	Source string
	// Typed is a pointer to the k8s.io/api, prometheus-operator or KEDA
	// type of the object.
	Typed any
}

// newTyped returns a pointer to the Go type of apiVersion/kind; every kind
// the chart renders is listed, so a new kind fails until it is checked too.
func newTyped(apiVersion, kind string) (any, error) {
	switch apiVersion + "/" + kind {
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "v1/Service":
		return &corev1.Service{}, nil
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}, nil
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}, nil
	case "apps/v1/StatefulSet":
		return &appsv1.StatefulSet{}, nil
	case "batch/v1/Job":
		return &batchv1.Job{}, nil
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	case "networking.k8s.io/v1/NetworkPolicy":
		return &networkingv1.NetworkPolicy{}, nil
	case "autoscaling/v2/HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}, nil
	case "monitoring.coreos.com/v1/PodMonitor":
		return &monitoringv1.PodMonitor{}, nil
	case "monitoring.coreos.com/v1/PrometheusRule":
		return &monitoringv1.PrometheusRule{}, nil
	case "keda.sh/v1alpha1/ScaledObject":
		return &scaledObject{}, nil
	case "keda.sh/v1alpha1/TriggerAuthentication":
		return &triggerAuthentication{}, nil
	}
	return nil, fmt.Errorf("%s %s: a kind the tests do not know; add its Go type to newTyped", apiVersion, kind)
}

var sourceLine = regexp.MustCompile(`(?m)^# Source: (\S+)`)

// decode splits helm's output into documents and decodes each strictly:
// an unknown or misspelled field, a duplicate key or a wrong type is an
// error naming the object.
func decode(manifest []byte) (objects, error) {
	var out []object
	for _, doc := range bytes.Split(manifest, []byte("\n---")) {
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			return nil, fmt.Errorf("parse a rendered document: %w\n%s", err, doc)
		}
		if head.Kind == "" {
			continue // a template that rendered only comments
		}
		o := object{APIVersion: head.APIVersion, Kind: head.Kind, Name: head.Metadata.Name}
		if m := sourceLine.FindSubmatch(doc); m != nil {
			o.Source = string(m[1])
		}
		typed, err := newTyped(o.APIVersion, o.Kind)
		if err != nil {
			return nil, err
		}
		if err := yaml.UnmarshalStrict(doc, typed); err != nil {
			return nil, fmt.Errorf("%s %s (%s): %w", o.Kind, o.Name, o.Source, err)
		}
		o.Typed = typed
		out = append(out, o)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("helm rendered no object")
	}
	return out, nil
}

// objects is the rendered release, decoded.
type objects []object

func (os objects) of(kind string) []object {
	var out []object
	for _, o := range os {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

func (os objects) find(kind, name string) (object, bool) {
	for _, o := range os {
		if o.Kind == kind && o.Name == name {
			return o, true
		}
	}
	return object{}, false
}

// workload is a Deployment, StatefulSet or Job reduced to what the checks read.
type workload struct {
	Kind, Name string
	Component  string
	Pod        corev1.PodTemplateSpec
}

func (os objects) workloads() []workload {
	var out []workload
	for _, o := range os {
		w := workload{Kind: o.Kind, Name: o.Name}
		switch t := o.Typed.(type) {
		case *appsv1.Deployment:
			w.Pod = t.Spec.Template
		case *appsv1.StatefulSet:
			w.Pod = t.Spec.Template
		case *batchv1.Job:
			w.Pod = t.Spec.Template
		default:
			continue
		}
		w.Component = w.Pod.Labels["app.kubernetes.io/component"]
		out = append(out, w)
	}
	return out
}

// env is a container's environment as name → the literal value, or
// "secret:NAME/KEY" for a Secret reference.
func env(c corev1.Container) map[string]string {
	out := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			out[e.Name] = "secret:" + e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
		case e.ValueFrom != nil:
			out[e.Name] = "ref"
		default:
			out[e.Name] = e.Value
		}
	}
	return out
}

// secretName says whether an environment variable or ConfigMap key holds a
// credential by its name; *_FILE and *_LOCATION name a file, which is fine.
func secretName(name string) bool {
	n := strings.ToUpper(name)
	if strings.HasSuffix(n, "_FILE") || strings.HasSuffix(n, "_LOCATION") || strings.HasSuffix(n, "_PATH") {
		return false
	}
	for _, w := range []string{"PASSWORD", "SECRET", "TOKEN", "API_KEY", "DSN", "ACCESS_KEY"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// credentialsInURL finds a user:password@ in a value.
var credentialsInURL = regexp.MustCompile(`://[^/@\s:]+:[^/@\s]+@`)
