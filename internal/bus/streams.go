package bus

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Names of the streams, consumers and KV bucket promoter creates.
const (
	StreamEvents    = "PROMOTER_EVENTS"
	StreamBuilds    = "PROMOTER_BUILDS"
	BucketRevisions = "promoter-revisions"
)

// eventsPrefix is the events stream's subject space (types.Subject* are in it).
const eventsPrefix = "promoter.events."

// DuplicateWindow is how long a message id is remembered: a webhook redelivered within it
// is acknowledged without being stored twice. GitHub and GitLab let users redeliver by
// hand for days, but the revision state makes late duplicates harmless anyway.
const DuplicateWindow = 24 * time.Hour

// streamConfigs are the streams promoter needs, with explicit limits so a flood of
// events cannot fill the disk.
func streamConfigs(replicas int) []jetstream.StreamConfig {
	return []jetstream.StreamConfig{
		{
			Name:        StreamEvents,
			Description: "registry pushes, source changes, release tags, build results and steps",
			Subjects:    []string{eventsPrefix + ">"},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			MaxAge:      7 * 24 * time.Hour,
			MaxBytes:    1 << 30,
			MaxMsgSize:  1 << 20,
			Duplicates:  DuplicateWindow,
			Discard:     jetstream.DiscardOld,
			Replicas:    replicas,
			// Concurrent publishes are stored as one batch, fsynced once (groupcommit.go).
			AllowAtomicPublish: true,
		},
		{
			Name:        StreamBuilds,
			Description: "build requests, one subject per platform, consumed by builder agents",
			Subjects:    []string{"promoter.builds.>"},
			Retention:   jetstream.WorkQueuePolicy,
			Storage:     jetstream.FileStorage,
			MaxAge:      24 * time.Hour,
			MaxBytes:    256 << 20,
			MaxMsgSize:  1 << 20,
			Duplicates:  DuplicateWindow,
			Discard:     jetstream.DiscardNew,
			Replicas:    replicas,
		},
	}
}

func revisionsConfig(replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      BucketRevisions,
		Description: "per-revision state: platforms seen, index, signatures, promotions",
		History:     5,
		MaxBytes:    256 << 20,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	}
}
