package bus

import (
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrNotReady is returned while the bus is not connected or its streams do not exist yet.
var ErrNotReady = errors.New("bus not ready")

// ErrReplicas is wrapped by the error of a replica count the NATS servers cannot place: a
// non-clustered server asked for more than one, or a cluster with fewer JetStream servers
// (or fewer up) than replicas.
var ErrReplicas = errors.New("nats replicas cannot be placed")

// AutoReplicas lets the bus choose the replica count (see WithReplicas);
// ClusterReplicas is its choice on an external cluster: a quorum of 2 acknowledges.
const (
	AutoReplicas    = 0
	ClusterReplicas = 3
)

// JetStream API error codes (nats-server errors.json) that mean "cannot place replicas".
const (
	errCodeReplicasNotSupported  jetstream.ErrorCode = 10074 // replicas > 1 not supported in non-clustered mode
	errCodeNoSuitablePeers       jetstream.ErrorCode = 10005 // no suitable peers for placement
	errCodeInsufficientResources jetstream.ErrorCode = 10023 // insufficient resources
)

func apiErrorCode(err error) jetstream.ErrorCode {
	var api *jetstream.APIError
	if errors.As(err, &api) {
		return api.ErrorCode
	}
	return 0
}

func isNotClustered(err error) bool { return apiErrorCode(err) == errCodeReplicasNotSupported }

// replicasHint turns the server's placement errors into one that says what to set.
// configured is what the user asked for (AutoReplicas or a count).
func replicasHint(err error, replicas, configured int) error {
	setting := fmt.Sprintf("nats.replicas is %d", configured)
	if configured == AutoReplicas {
		setting = fmt.Sprintf("nats.replicas is unset, so %d on an external NATS", replicas)
	}
	switch apiErrorCode(err) {
	case errCodeReplicasNotSupported:
		return fmt.Errorf("%w: %s but the NATS server is not clustered; set nats.replicas: 1 (a 2xx then means one server holds the event) or point nats.url at a JetStream cluster of at least %d servers: %w",
			ErrReplicas, setting, replicas, err)
	case errCodeNoSuitablePeers, errCodeInsufficientResources:
		return fmt.Errorf("%w: %s but the NATS cluster has fewer than %d JetStream servers up; start them, or set nats.replicas to the number of JetStream servers (3 or 5 for a quorum that survives losing one or two): %w",
			ErrReplicas, setting, replicas, err)
	}
	return err
}
