// Package metrics owns promoter's Prometheus collectors. The binary creates one Metrics on
// its own registry and hands it to every component; libraries default to Discard() so they
// never touch a global registry.
//
// Names follow promoter_<subsystem>_<name>_<unit>; every label has a bounded set of values
// (no digests, tags or revisions as labels).
package metrics

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds every promoter collector.
type Metrics struct {
	Registry *prometheus.Registry

	// EventsReceived counts webhook events by source (the receiver: registry, harbor,
	// cloudevents, acr, gar, ecr, quay, github, gitlab, generic), action (push, pull, mount,
	// delete, ...), outcome (kept, ignored, duplicate, rejected, invalid: an arch tag whose
	// revision breaks types.ValidateRevision) and reason: why an event was ignored or
	// invalid, one of a fixed set the events package defines (events.IgnoreReasons), ""
	// for the other outcomes.
	EventsReceived *prometheus.CounterVec
	// EventResponses counts the answers of the webhook receivers by source (as
	// EventsReceived, plus "unknown" for no receiver) and HTTP status code: a 5xx is an
	// event the sender must retry (503: the bus did not acknowledge it).
	EventResponses *prometheus.CounterVec
	// MergeDuration observes the time from "all platforms present" to the index pushed.
	MergeDuration prometheus.Histogram
	// Revisions is the number of revisions in each phase, as last seen by this replica.
	Revisions *prometheus.GaugeVec
	// RevisionsIdle is, per unfinished phase (building, waiting, merged, signed), the
	// seconds since the least recently updated revision in it changed, as last seen by this
	// replica; 0 when the phase holds none. A revision that stays in a phase without any
	// change (a platform never pushed, a step never retried) makes it grow.
	RevisionsIdle *prometheus.GaugeVec
	// BusReady is 1 while the bus (NATS connection, streams, KV bucket) is usable, checked
	// at each scrape with the probe set by ObserveBus; 0 before ObserveBus or while not.
	BusReady prometheus.Collector
	// ImmutabilityViolations counts refused attempts to move an immutable tag.
	ImmutabilityViolations prometheus.Counter
	// StaleEvents counts push notifications whose digest was not what the registry held
	// under the tag when they were handled (pushed again since, deleted, or forged).
	StaleEvents prometheus.Counter
	// StepRetries counts failed attempts of a step that will be retried, by step (merge,
	// sign, promote).
	StepRetries *prometheus.CounterVec
	// Merges counts merge attempts by outcome (merged, exists, failed, conflicted).
	Merges *prometheus.CounterVec
	// SignTotal counts signing by outcome (signed, failed).
	SignTotal *prometheus.CounterVec
	// SignDuration observes signing an index and its children.
	SignDuration prometheus.Histogram
	// PromoteBytes counts blob bytes by mode (uploaded, mounted, skipped).
	PromoteBytes *prometheus.CounterVec
	// PromoteDuration observes one promotion of one destination.
	PromoteDuration prometheus.Histogram
	// Promotions counts promotions of one destination by outcome (promoted, skipped, immutable, failed).
	Promotions *prometheus.CounterVec
	// BuildsDispatched counts build requests by platform and outcome (dispatched, duplicate, exists).
	BuildsDispatched *prometheus.CounterVec
	// Builds counts finished build attempts by platform and outcome (succeeded, failed, gave_up).
	Builds *prometheus.CounterVec
	// SourcePolls counts source polls (git ls-remote of a pipeline's branch) by outcome (new,
	// duplicate, unchanged, missing, failed).
	SourcePolls *prometheus.CounterVec

	// HTTPConnections is the number of open connections per listener (webhook, status, metrics).
	HTTPConnections *prometheus.GaugeVec
	// HTTPConnectionsShed counts connections closed to stay within the connection budget, by
	// listener and reason (slow_body, idle, slow_headers, refused, client_cap).
	HTTPConnectionsShed *prometheus.CounterVec
	// HTTPInFlight is the number of requests being worked on (body read) per listener.
	HTTPInFlight *prometheus.GaugeVec
	// HTTPRejected counts requests answered before their handler ran, by listener and
	// reason (in_flight: 503 past the in-flight cap; body_timeout: 408, body too slow;
	// body_aborted: the connection was shed or the client left mid-body).
	HTTPRejected *prometheus.CounterVec

	// UnknownPipeline counts consumed messages dropped because they name a pipeline that is
	// not configured (types.ErrUnknownPipeline), by subject (the bus subject, one of the
	// daemon's five: promoter.events.registry, .source, .builds, .releases, .steps).
	UnknownPipeline *prometheus.CounterVec

	busProbe atomic.Pointer[func(context.Context) error]
}

// busProbeTimeout bounds the bus check of one scrape.
const busProbeTimeout = 2 * time.Second

// ObserveBus sets the check behind promoter_bus_ready: ready returns nil when the bus is
// usable (bus.Bus.Ready). It is called at each scrape with a deadline of 2s.
func (m *Metrics) ObserveBus(ready func(context.Context) error) { m.busProbe.Store(&ready) }

func (m *Metrics) busReady() float64 {
	p := m.busProbe.Load()
	if p == nil {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), busProbeTimeout)
	defer cancel()
	if (*p)(ctx) != nil {
		return 0
	}
	return 1
}

// New registers every collector, plus the Go and process collectors, on reg.
func New(reg *prometheus.Registry) *Metrics {
	durations := []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}
	m := &Metrics{
		Registry: reg,
		EventsReceived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promoter_events_received_total",
			Help: "Webhook events received, by source (the receiver: registry, harbor, cloudevents, acr, gar, ecr, quay, github, gitlab, generic), action, outcome (kept, ignored, duplicate, rejected, invalid) and reason (why an ignored or invalid event was not kept: not_a_push, unknown_type, push_failed, not_a_manifest, no_tag, signature_tag, no_pipeline, ambiguous_pipeline, other_registry, cache_tag, not_arch_tag, invalid_revision, handshake, ping, ref_deleted, not_branch_or_tag, not_release_tag; empty otherwise).",
		}, []string{"source", "action", "outcome", "reason"}),
		EventResponses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promoter_events_responses_total",
			Help: "Answers of the webhook receivers by source (the receiver, as promoter_events_received_total) and HTTP status code; a 5xx is an event the sender must retry.",
		}, []string{"source", "code"}),
		MergeDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "promoter_merge_duration_seconds", Help: "Time to merge a complete revision into an index and push it.",
			Buckets: durations,
		}),
		Revisions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "promoter_revisions", Help: "Revisions by state (building, waiting, merged, signed, promoted, failed, conflicted).",
		}, []string{"state"}),
		RevisionsIdle: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "promoter_revisions_idle_seconds",
			Help: "Per unfinished state (building, waiting, merged, signed), seconds since the least recently updated revision in it changed; 0 when none.",
		}, []string{"state"}),
		ImmutabilityViolations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "promoter_immutability_violations_total", Help: "Refused attempts to move an immutable tag (revision index or arch tag, destination tag).",
		}),
		StaleEvents: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "promoter_merge_stale_events_total", Help: "Push notifications whose digest was not what the registry held under the tag when handled; the registry's digest is used.",
		}),
		StepRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promoter_step_retries_total", Help: "Failed attempts of a step that will be retried, by step (merge, sign, promote).",
		}, []string{"step"}),
		Merges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promoter_merges_total", Help: "Merge attempts by outcome (merged, exists, failed, conflicted).",
		}, []string{"outcome"}),
		SignTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promoter_sign_total", Help: "Signing of a revision (index and children) by outcome (signed, failed).",
		}, []string{"outcome"}),
		SignDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "promoter_sign_duration_seconds", Help: "Time to sign an index and its children.", Buckets: durations,
		}),
		PromoteBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promoter_promote_bytes_total", Help: "Blob bytes handled by promotions, by mode (uploaded, mounted, skipped).",
		}, []string{"mode"}),
		PromoteDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "promoter_promote_duration_seconds", Help: "Time to promote a revision to one destination.", Buckets: durations,
		}),
		Promotions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promoter_promotions_total", Help: "Promotions of one destination by outcome (promoted, skipped, immutable, unsigned, failed).",
		}, []string{"outcome"}),
		BuildsDispatched: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promoter_builds_dispatched_total", Help: "Build requests by platform and outcome (dispatched, duplicate, exists).",
		}, []string{"platform", "outcome"}),
		Builds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promoter_builds_total", Help: "Finished build attempts by platform and outcome (succeeded, failed, gave_up).",
		}, []string{"platform", "outcome"}),
		SourcePolls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promoter_source_polls_total",
			Help: "Polls of a pipeline's source branch (git ls-remote) by outcome: new (a head published), duplicate (a new head the bus had already, from a webhook or another replica), unchanged, missing (no such branch), failed.",
		}, []string{"outcome"}),
		HTTPConnections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "promoter_http_connections", Help: "Open connections by listener (webhook, status, metrics).",
		}, []string{"listener"}),
		HTTPConnectionsShed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promoter_http_connections_shed_total",
			Help: "Connections closed to stay within server.maxConns, by listener and reason (slow_body, idle, slow_headers, refused, client_cap).",
		}, []string{"listener", "reason"}),
		HTTPInFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "promoter_http_requests_in_flight", Help: "Requests being worked on (body received) by listener.",
		}, []string{"listener"}),
		HTTPRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promoter_http_requests_rejected_total",
			Help: "Requests answered before their handler ran, by listener and reason (in_flight, body_timeout, body_aborted).",
		}, []string{"listener", "reason"}),
	}
	m.BusReady = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "promoter_bus_ready", Help: "1 while the NATS JetStream bus (connection, streams, KV bucket) is usable, checked at each scrape; 0 otherwise.",
	}, m.busReady)
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.EventsReceived, m.EventResponses, m.MergeDuration, m.Revisions, m.RevisionsIdle, m.BusReady, m.ImmutabilityViolations, m.StaleEvents, m.StepRetries, m.Merges,
		m.SignTotal, m.SignDuration, m.PromoteBytes, m.PromoteDuration, m.Promotions,
		m.BuildsDispatched, m.Builds, m.SourcePolls,
		m.HTTPConnections, m.HTTPConnectionsShed, m.HTTPInFlight, m.HTTPRejected,
	)
	m.UnknownPipeline = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "promoter_messages_unknown_pipeline_total",
		Help: "Consumed messages dropped because they name a pipeline that is not configured, by subject (the bus subject the daemon consumed it on).",
	}, []string{"subject"})
	reg.MustRegister(m.UnknownPipeline)
	return m
}

// Discard returns collectors on a private registry nobody scrapes: the default for
// libraries and tests that do not look at metrics.
func Discard() *Metrics { return New(prometheus.NewRegistry()) }
