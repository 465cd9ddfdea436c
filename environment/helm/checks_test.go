package helm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"
)

// A check reads a rendered release and the values it was rendered with and
// says what is wrong with it, joining every problem it finds.
type check struct {
	name string
	run  func(objs objects, vals map[string]any) error
}

var checks = []check{
	{"pods are non-root, read-only, without capabilities", checkSecurity},
	{"every process has its probes, preStop and grace period", checkProbes},
	{"transactional consumers are StatefulSets named by the pod", checkFencing},
	{"each component has its ServiceAccount, PDB and NetworkPolicy", checkPerComponent},
	{"the NetworkPolicies admit traffic only to the API", checkIngress},
	{"credentials only from Secrets", checkSecrets},
	{"autoscalers match the mode and stay within the partitions", checkAutoscaling},
	{"the bootstrap is a post-install/post-upgrade hook", checkBootstrap},
	{"rules and dashboards are dashboards/ itself", checkObservability},
}

// dockerfileUser is the uid:gid environment/Dockerfile's image runs as.
func dockerfileUser() (uid, gid int64, err error) {
	b, err := os.ReadFile(filepath.Join("..", "Dockerfile"))
	if err != nil {
		return 0, 0, err
	}
	m := regexp.MustCompile(`(?m)^USER (\d+):(\d+)\s*$`).FindSubmatch(b)
	if m == nil {
		return 0, 0, errors.New("environment/Dockerfile has no numeric USER uid:gid")
	}
	uid, _ = strconv.ParseInt(string(m[1]), 10, 64)
	gid, _ = strconv.ParseInt(string(m[2]), 10, 64)
	return uid, gid, nil
}

func checkSecurity(objs objects, _ map[string]any) error {
	uid, gid, err := dockerfileUser()
	if err != nil {
		return err
	}
	var errs []error
	for _, w := range objs.workloads() {
		ps := w.Pod.Spec.SecurityContext
		switch {
		case ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot:
			errs = append(errs, fmt.Errorf("%s %s: pod without runAsNonRoot: true", w.Kind, w.Name))
		case ps.RunAsUser == nil || *ps.RunAsUser != uid || ps.RunAsGroup == nil || *ps.RunAsGroup != gid:
			errs = append(errs, fmt.Errorf("%s %s: pod does not run as the image's user %d:%d", w.Kind, w.Name, uid, gid))
		case ps.SeccompProfile == nil || ps.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
			errs = append(errs, fmt.Errorf("%s %s: pod without the RuntimeDefault seccomp profile", w.Kind, w.Name))
		}
		if w.Pod.Spec.AutomountServiceAccountToken == nil || *w.Pod.Spec.AutomountServiceAccountToken {
			errs = append(errs, fmt.Errorf("%s %s: mounts a service account token it never uses", w.Kind, w.Name))
		}
		for _, c := range w.Pod.Spec.Containers {
			sc := c.SecurityContext
			switch {
			case sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
				errs = append(errs, fmt.Errorf("%s %s/%s: root filesystem not read-only", w.Kind, w.Name, c.Name))
			case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
				errs = append(errs, fmt.Errorf("%s %s/%s: allows privilege escalation", w.Kind, w.Name, c.Name))
			case sc.Capabilities == nil || !reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
				errs = append(errs, fmt.Errorf("%s %s/%s: capabilities are not exactly drop ALL", w.Kind, w.Name, c.Name))
			}
		}
	}
	return errors.Join(errs...)
}

func checkProbes(objs objects, vals map[string]any) error {
	var errs []error
	for _, w := range objs.workloads() {
		if w.Kind == "Job" {
			continue
		}
		spec := w.Pod.Spec
		for _, c := range spec.Containers {
			ports := map[string]bool{}
			for _, p := range c.Ports {
				ports[p.Name] = true
			}
			for _, p := range []struct {
				what  string
				probe *corev1.Probe
				path  string
			}{{"startup", c.StartupProbe, "/healthz"}, {"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
				switch {
				case p.probe == nil || p.probe.HTTPGet == nil:
					errs = append(errs, fmt.Errorf("%s %s/%s: no %s probe", w.Kind, w.Name, c.Name, p.what))
				case p.probe.HTTPGet.Path != p.path:
					errs = append(errs, fmt.Errorf("%s %s/%s: %s probe on %s, want %s", w.Kind, w.Name, c.Name, p.what, p.probe.HTTPGet.Path, p.path))
				case !ports[p.probe.HTTPGet.Port.String()]:
					errs = append(errs, fmt.Errorf("%s %s/%s: %s probe on port %s, which the container does not declare", w.Kind, w.Name, c.Name, p.what, p.probe.HTTPGet.Port.String()))
				}
			}
			if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil || c.Lifecycle.PreStop.Sleep.Seconds < 1 {
				errs = append(errs, fmt.Errorf("%s %s/%s: no preStop sleep", w.Kind, w.Name, c.Name))
				continue
			}
			preStop := c.Lifecycle.PreStop.Sleep.Seconds
			drain := int64(number(vals, w.Component+".drainSeconds"))
			if drain <= 0 {
				errs = append(errs, fmt.Errorf("%s %s: values have no %s.drainSeconds", w.Kind, w.Name, w.Component))
			}
			if g := spec.TerminationGracePeriodSeconds; g == nil || *g <= preStop+drain {
				errs = append(errs, fmt.Errorf("%s %s: terminationGracePeriodSeconds %d is not longer than preStop %d s + drain %d s", w.Kind, w.Name, deref(g), preStop, drain))
			}
		}
	}
	return errors.Join(errs...)
}

// checkFencing: the streamer and the collector take their transactional id
// from the pod name, and only a StatefulSet keeps that name across restarts.
func checkFencing(objs objects, _ map[string]any) error {
	want := map[string]string{"streamer": "STREAMER_TRANSACTIONAL_ID", "collector": "COLLECTOR_TRANSACTIONAL_ID"}
	var errs []error
	for _, w := range objs.workloads() {
		name, ok := want[w.Component]
		if !ok {
			continue
		}
		if w.Kind != "StatefulSet" {
			errs = append(errs, fmt.Errorf("%s is a %s: a restarted pod gets a new name and cannot fence its predecessor", w.Name, w.Kind))
		}
		e := env(w.Pod.Spec.Containers[0])
		if e[name] != "$(POD_NAME)" || e["POD_NAME"] != "ref" {
			errs = append(errs, fmt.Errorf("%s: %s is %q, want $(POD_NAME) from the downward API", w.Name, name, e[name]))
		}
	}
	return errors.Join(errs...)
}

func checkPerComponent(objs objects, _ map[string]any) error {
	var errs []error
	for _, w := range objs.workloads() {
		sa := w.Pod.Spec.ServiceAccountName
		if sa != w.Name {
			errs = append(errs, fmt.Errorf("%s %s runs as ServiceAccount %q, not its own", w.Kind, w.Name, sa))
		}
		if _, ok := objs.find("ServiceAccount", sa); !ok {
			errs = append(errs, fmt.Errorf("%s %s: ServiceAccount %q is not rendered", w.Kind, w.Name, sa))
		}
		if _, ok := objs.find("NetworkPolicy", w.Name); !ok {
			errs = append(errs, fmt.Errorf("%s %s has no NetworkPolicy", w.Kind, w.Name))
		}
		if _, ok := objs.find("PodDisruptionBudget", w.Name); !ok && w.Kind != "Job" {
			errs = append(errs, fmt.Errorf("%s %s has no PodDisruptionBudget", w.Kind, w.Name))
		}
	}
	return errors.Join(errs...)
}

// checkIngress: only the API accepts connections from anywhere; the other
// pods accept only their metrics port, from named peers.
func checkIngress(objs objects, _ map[string]any) error {
	var errs []error
	for _, o := range objs.of("NetworkPolicy") {
		np := o.Typed.(*networkingv1.NetworkPolicy)
		component := np.Spec.PodSelector.MatchLabels["app.kubernetes.io/component"]
		hasIngress := false
		for _, t := range np.Spec.PolicyTypes {
			hasIngress = hasIngress || t == networkingv1.PolicyTypeIngress
		}
		if !hasIngress {
			errs = append(errs, fmt.Errorf("NetworkPolicy %s does not restrict ingress", o.Name))
		}
		for _, rule := range np.Spec.Ingress {
			for _, p := range rule.Ports {
				if component != "api" && (p.Port == nil || p.Port.String() != "metrics") {
					errs = append(errs, fmt.Errorf("NetworkPolicy %s admits port %v: only the API takes connections", o.Name, p.Port))
				}
			}
			if component != "api" && len(rule.From) == 0 {
				errs = append(errs, fmt.Errorf("NetworkPolicy %s admits anyone to its metrics port", o.Name))
			}
		}
		if len(np.Spec.Egress) == 0 {
			errs = append(errs, fmt.Errorf("NetworkPolicy %s allows no egress, not even DNS", o.Name))
		}
	}
	return errors.Join(errs...)
}

// checkSecrets: the chart renders no Secret, its ConfigMaps hold no
// credential, and a container's credential comes from a Secret, by reference
// or as a mounted file.
func checkSecrets(objs objects, vals map[string]any) error {
	dashboardLabel, _ := lookup(vals, "monitoring.grafanaDashboards.label").(string)
	var errs []error
	for _, o := range objs {
		if o.Kind == "Secret" {
			errs = append(errs, fmt.Errorf("the chart renders Secret %s: credentials must come from existing Secrets", o.Name))
		}
	}
	for _, o := range objs.of("ConfigMap") {
		cm := o.Typed.(*corev1.ConfigMap)
		if _, ok := cm.Labels[dashboardLabel]; ok {
			continue // a dashboard, checked against dashboards/ by checkObservability
		}
		for k, v := range cm.Data {
			if secretName(k) || credentialsInURL.MatchString(v) {
				errs = append(errs, fmt.Errorf("ConfigMap %s holds %s: a credential belongs in a Secret", o.Name, k))
			}
		}
	}
	for _, w := range objs.workloads() {
		for _, c := range w.Pod.Spec.Containers {
			for name, value := range env(c) {
				if (secretName(name) && value != "" && value[:min(len(value), 7)] != "secret:") || credentialsInURL.MatchString(value) {
					errs = append(errs, fmt.Errorf("%s %s/%s: %s is set literally; take it from a Secret", w.Kind, w.Name, c.Name, name))
				}
			}
		}
	}
	return errors.Join(errs...)
}

func checkAutoscaling(objs objects, vals map[string]any) error {
	mode, _ := lookup(vals, "autoscaling.mode").(string)
	partitions := int32(number(vals, "kafka.partitions"))
	var errs []error
	workloads := map[string]workload{}
	for _, w := range objs.workloads() {
		workloads[w.Component] = w
	}
	scaled := map[string]bool{}
	for _, o := range objs.of("ScaledObject") {
		so := o.Typed.(*scaledObject)
		ref := so.Spec.ScaleTargetRef
		w, ok := workloads[so.Labels["app.kubernetes.io/component"]]
		if ref == nil || !ok || ref.Name != w.Name || ref.Kind != w.Kind {
			errs = append(errs, fmt.Errorf("ScaledObject %s targets %+v, which is not a rendered workload", o.Name, ref))
			continue
		}
		scaled[w.Component] = true
		if max := so.Spec.MaxReplicaCount; max == nil || *max > partitions && w.Component != "worker" {
			errs = append(errs, fmt.Errorf("ScaledObject %s: maxReplicaCount %d above the %d partitions", o.Name, deref(max), partitions))
		}
		if len(so.Spec.Triggers) == 0 {
			errs = append(errs, fmt.Errorf("ScaledObject %s has no trigger", o.Name))
		}
		for _, tr := range so.Spec.Triggers {
			if err := checkTrigger(tr); err != nil {
				errs = append(errs, fmt.Errorf("ScaledObject %s: %w", o.Name, err))
			}
			if tr.AuthenticationRef != nil {
				if _, ok := objs.find("TriggerAuthentication", tr.AuthenticationRef.Name); !ok {
					errs = append(errs, fmt.Errorf("ScaledObject %s: TriggerAuthentication %s is not rendered", o.Name, tr.AuthenticationRef.Name))
				}
			}
		}
	}
	for _, o := range objs.of("TriggerAuthentication") {
		for _, ref := range o.Typed.(*triggerAuthentication).Spec.SecretTargetRef {
			if ref.Name == "" || ref.Key == "" {
				errs = append(errs, fmt.Errorf("TriggerAuthentication %s: parameter %s names no Secret key", o.Name, ref.Parameter))
			}
		}
	}
	hpa := map[string]bool{}
	for _, o := range objs.of("HorizontalPodAutoscaler") {
		h := o.Typed.(*autoscalingv2.HorizontalPodAutoscaler)
		c := h.Labels["app.kubernetes.io/component"]
		hpa[c] = true
		if w, ok := workloads[c]; !ok || h.Spec.ScaleTargetRef.Name != w.Name || h.Spec.ScaleTargetRef.Kind != w.Kind {
			errs = append(errs, fmt.Errorf("HorizontalPodAutoscaler %s targets %+v, which is not a rendered workload", o.Name, h.Spec.ScaleTargetRef))
		}
		if c != "api" && c != "worker" && h.Spec.MaxReplicas > partitions {
			errs = append(errs, fmt.Errorf("HorizontalPodAutoscaler %s: maxReplicas %d above the %d partitions", o.Name, h.Spec.MaxReplicas, partitions))
		}
	}
	for c := range workloads {
		if c == "bootstrap" {
			continue
		}
		var want string
		switch {
		case mode == "keda" && c != "api":
			want = "ScaledObject"
		case mode == "keda" || mode == "cpu":
			want = "HorizontalPodAutoscaler"
		}
		if got := map[bool]string{true: "ScaledObject"}[scaled[c]] + map[bool]string{true: "HorizontalPodAutoscaler"}[hpa[c]]; got != want {
			errs = append(errs, fmt.Errorf("mode %s: %s is scaled by %q, want %q", mode, c, got, want))
		}
	}
	return errors.Join(errs...)
}

func checkBootstrap(objs objects, vals map[string]any) error {
	jobs := objs.of("Job")
	if len(jobs) != 1 {
		return fmt.Errorf("%d Jobs rendered, want the bootstrap alone", len(jobs))
	}
	j := jobs[0].Typed.(*batchv1.Job)
	var errs []error
	if h := j.Annotations["helm.sh/hook"]; h != "post-install,post-upgrade" {
		errs = append(errs, fmt.Errorf("Job %s: hook %q, want post-install,post-upgrade", j.Name, h))
	}
	args := j.Spec.Template.Spec.Containers[0].Args
	want := []string{"bootstrap", "--partitions=" + strconv.Itoa(number(vals, "kafka.partitions")), "--replication-factor=" + strconv.Itoa(number(vals, "kafka.replicationFactor"))}
	if !reflect.DeepEqual(args, want) {
		errs = append(errs, fmt.Errorf("Job %s runs %q, want %q", j.Name, args, want))
	}
	return errors.Join(errs...)
}

// checkObservability: the PrometheusRule holds exactly dashboards/alerts.yml
// and each dashboard ConfigMap exactly its dashboards/*.json.
func checkObservability(objs objects, vals map[string]any) error {
	var errs []error
	if on, _ := lookup(vals, "monitoring.prometheusRule.enabled").(bool); on {
		b, err := os.ReadFile(filepath.Join("..", "..", "dashboards", "alerts.yml"))
		if err != nil {
			return err
		}
		var want monitoringv1.PrometheusRuleSpec
		if err := yaml.UnmarshalStrict(b, &want); err != nil {
			return fmt.Errorf("dashboards/alerts.yml: %w", err)
		}
		rules := objs.of("PrometheusRule")
		if len(rules) != 1 {
			errs = append(errs, fmt.Errorf("%d PrometheusRules rendered, want 1", len(rules)))
		} else if got := rules[0].Typed.(*monitoringv1.PrometheusRule).Spec; !reflect.DeepEqual(got, want) {
			errs = append(errs, fmt.Errorf("PrometheusRule %s differs from dashboards/alerts.yml", rules[0].Name))
		}
	}
	if on, _ := lookup(vals, "monitoring.grafanaDashboards.enabled").(bool); on {
		files, err := filepath.Glob(filepath.Join("..", "..", "dashboards", "*.json"))
		if err != nil || len(files) == 0 {
			return fmt.Errorf("no dashboards/*.json: %v", err)
		}
		label, _ := lookup(vals, "monitoring.grafanaDashboards.label").(string)
		got := map[string]string{}
		for _, o := range objs.of("ConfigMap") {
			cm := o.Typed.(*corev1.ConfigMap)
			if _, ok := cm.Labels[label]; ok {
				for k, v := range cm.Data {
					got[k] = v
				}
			}
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			if g, ok := got[filepath.Base(f)]; !ok {
				errs = append(errs, fmt.Errorf("no ConfigMap labelled %s holds %s", label, filepath.Base(f)))
			} else if g != string(b) && g != string(b[:len(b)-1]) {
				errs = append(errs, fmt.Errorf("the ConfigMap of %s differs from dashboards/%s", filepath.Base(f), filepath.Base(f)))
			}
		}
	}
	return errors.Join(errs...)
}

// deref is *p, or 0 for nil.
func deref[T int32 | int64](p *T) T {
	if p == nil {
		return 0
	}
	return *p
}
