package coordinator

import (
	"context"
	"errors"
	"net/http"

	"connectrpc.com/connect"
	coordinatorv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the coordinator's Prometheus metrics, in a registry of their
// own.
type Metrics struct {
	reg         *prometheus.Registry
	created     prometheus.Counter
	transitions *prometheus.CounterVec
	waited      prometheus.Histogram
	passes      prometheus.Histogram
	conflicts   prometheus.Counter
	requests    *prometheus.CounterVec
}

// NewMetrics makes the metrics, with Go runtime and process metrics.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		created: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jumpmesh_coordinator_leases_created_total", Help: "Leases created.",
		}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jumpmesh_coordinator_lease_transitions_total", Help: "Lease state changes, by new state and reason.",
		}, []string{"state", "reason"}),
		waited: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "jumpmesh_coordinator_lease_wait_seconds", Help: "Time from creating a lease to its being ready.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 12),
		}),
		passes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "jumpmesh_coordinator_scheduler_pass_seconds", Help: "Time to plan and apply one scheduling pass.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jumpmesh_coordinator_write_conflicts_total", Help: "Writes retried because the record changed since it was read.",
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jumpmesh_coordinator_requests_total", Help: "API calls, by procedure and result code.",
		}, []string{"procedure", "code"}),
	}
	m.reg.MustRegister(m.created, m.transitions, m.waited, m.passes, m.conflicts, m.requests,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registerer takes metrics of parts run beside the coordinator, such as
// its built-in relay, to serve with its own.
func (m *Metrics) Registerer() prometheus.Registerer { return m.reg }

// Handler serves the metrics.
func (m *Metrics) Handler() http.Handler { return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}) }

func (m *Metrics) transition(l *coordinatorv1.Lease) {
	m.transitions.WithLabelValues(stateText(l.GetStatus().GetState()), reasonText(l.GetStatus().GetReason())).Inc()
}

// register adds the gauges read from c's cache at each scrape.
func (m *Metrics) register(c *Coordinator) {
	m.reg.MustRegister(&stateCollector{c: c,
		leases:    prometheus.NewDesc("jumpmesh_coordinator_leases", "Leases by state.", []string{"state"}, nil),
		exporters: prometheus.NewDesc("jumpmesh_coordinator_exporters", "Exporters by status.", []string{"status"}, nil),
	})
}

type stateCollector struct {
	c                 *Coordinator
	leases, exporters *prometheus.Desc
}

func (s *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- s.leases
	ch <- s.exporters
}

func (s *stateCollector) Collect(ch chan<- prometheus.Metric) {
	leases := map[coordinatorv1.LeaseState]int{}
	exporters := map[coordinatorv1.ExporterStatus]int{}
	s.c.cache.mu.RLock()
	for _, e := range s.c.cache.leases {
		leases[e.obj.GetStatus().GetState()]++
	}
	for _, e := range s.c.cache.exporters {
		exporters[exporterStatus(e)]++
	}
	s.c.cache.mu.RUnlock()
	for _, st := range []coordinatorv1.LeaseState{coordinatorv1.LeaseState_LEASE_STATE_PENDING,
		coordinatorv1.LeaseState_LEASE_STATE_READY, coordinatorv1.LeaseState_LEASE_STATE_ENDED} {
		ch <- prometheus.MustNewConstMetric(s.leases, prometheus.GaugeValue, float64(leases[st]), stateText(st))
	}
	for _, st := range []coordinatorv1.ExporterStatus{coordinatorv1.ExporterStatus_EXPORTER_STATUS_OFFLINE,
		coordinatorv1.ExporterStatus_EXPORTER_STATUS_AVAILABLE, coordinatorv1.ExporterStatus_EXPORTER_STATUS_LEASED,
		coordinatorv1.ExporterStatus_EXPORTER_STATUS_LOST} {
		ch <- prometheus.MustNewConstMetric(s.exporters, prometheus.GaugeValue, float64(exporters[st]), statusText(st))
	}
}

// metricsInterceptor counts calls by procedure and code.
type metricsInterceptor struct{ m *Metrics }

func (i metricsInterceptor) count(procedure string, err error) {
	code := "ok"
	var ce *connect.Error
	if errors.As(err, &ce) {
		code = ce.Code().String()
	} else if err != nil {
		code = connect.CodeUnknown.String()
	}
	i.m.requests.WithLabelValues(procedure, code).Inc()
}

func (i metricsInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		resp, err := next(ctx, req)
		i.count(req.Spec().Procedure, err)
		return resp, err
	}
}

func (i metricsInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i metricsInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		err := next(ctx, conn)
		i.count(conn.Spec().Procedure, err)
		return err
	}
}
