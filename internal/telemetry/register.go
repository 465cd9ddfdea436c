package telemetry

import (
	"errors"
	"fmt"
	"reflect"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers c on reg and returns the collector to use: c, or the
// one already registered under the same description when it is of the same
// type, so that a component built twice in one process (a streamer restarted
// by dev, the activities of two workers) shares its series instead of
// failing. A nil reg registers nowhere. Unlike prometheus.MustRegister and
// promauto it never panics: a collision with a different metric is an error.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if reg == nil {
		return c, nil
	}
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		// The dynamic types must match too: a Gauge satisfies the Counter
		// interface, and must not be handed out as one.
		if existing, ok := are.ExistingCollector.(C); ok && reflect.TypeOf(are.ExistingCollector) == reflect.TypeOf(c) {
			return existing, nil
		}
	}
	return c, err
}

// Factory builds metrics and registers them through Register, as
// promauto.With does but keeping the registration errors instead of
// panicking: a constructor builds all its metrics and then returns Err.
type Factory struct {
	reg  prometheus.Registerer
	errs []error
}

// With returns a Factory that registers on reg (nowhere when reg is nil).
func With(reg prometheus.Registerer) *Factory { return &Factory{reg: reg} }

// Err returns every registration error so far, each naming its metric; nil
// when all were registered.
func (f *Factory) Err() error { return errors.Join(f.errs...) }

func register[C prometheus.Collector](f *Factory, name string, c C) C {
	got, err := Register(f.reg, c)
	if err != nil {
		f.errs = append(f.errs, fmt.Errorf("register metric %s: %w", name, err))
	}
	return got
}

// NewCounter builds and registers a counter.
func (f *Factory) NewCounter(o prometheus.CounterOpts) prometheus.Counter {
	return register(f, prometheus.BuildFQName(o.Namespace, o.Subsystem, o.Name), prometheus.NewCounter(o))
}

// NewCounterVec builds and registers a counter vector.
func (f *Factory) NewCounterVec(o prometheus.CounterOpts, labels []string) *prometheus.CounterVec {
	return register(f, prometheus.BuildFQName(o.Namespace, o.Subsystem, o.Name), prometheus.NewCounterVec(o, labels))
}

// NewGauge builds and registers a gauge.
func (f *Factory) NewGauge(o prometheus.GaugeOpts) prometheus.Gauge {
	return register(f, prometheus.BuildFQName(o.Namespace, o.Subsystem, o.Name), prometheus.NewGauge(o))
}

// NewGaugeVec builds and registers a gauge vector.
func (f *Factory) NewGaugeVec(o prometheus.GaugeOpts, labels []string) *prometheus.GaugeVec {
	return register(f, prometheus.BuildFQName(o.Namespace, o.Subsystem, o.Name), prometheus.NewGaugeVec(o, labels))
}

// NewHistogram builds and registers a histogram.
func (f *Factory) NewHistogram(o prometheus.HistogramOpts) prometheus.Histogram {
	return register(f, prometheus.BuildFQName(o.Namespace, o.Subsystem, o.Name), prometheus.NewHistogram(o))
}

// NewHistogramVec builds and registers a histogram vector.
func (f *Factory) NewHistogramVec(o prometheus.HistogramOpts, labels []string) *prometheus.HistogramVec {
	return register(f, prometheus.BuildFQName(o.Namespace, o.Subsystem, o.Name), prometheus.NewHistogramVec(o, labels))
}

// The short forms below cover the common case, a metric with a full name,
// a help text and maybe labels, in one line each; the New forms take every
// option.

// Counter builds and registers a counter.
func (f *Factory) Counter(name, help string) prometheus.Counter {
	return f.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
}

// CounterVec builds and registers a counter with labels.
func (f *Factory) CounterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return f.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
}

// Gauge builds and registers a gauge.
func (f *Factory) Gauge(name, help string) prometheus.Gauge {
	return f.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
}

// GaugeVec builds and registers a gauge with labels.
func (f *Factory) GaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	return f.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
}

// Histogram builds and registers a histogram with the given buckets.
func (f *Factory) Histogram(name, help string, buckets []float64) prometheus.Histogram {
	return f.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
}

// HistogramVec builds and registers a histogram with labels.
func (f *Factory) HistogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	return f.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
}
