// Package listen owns promoter's HTTP servers: every listener (webhooks, status, metrics)
// is built here, with one set of defaults for its timeouts and limits, so a client that
// trickles bytes cannot hold a connection, a descriptor or a worker for long.
//
// Four things protect honest senders:
//   - a deadline on the whole request, body included (Limits.ReadTimeout), so a slow body
//     dies in seconds;
//   - an in-flight cap that counts a request only once its body has arrived
//     (Limits.MaxInFlight): a slow client never takes a slot from one that is ready, and
//     past the cap the answer is a quick 503 with Retry-After;
//   - a connection budget below the open-file limit (Conns): a new connection past it
//     closes the connection that has been reading its request the longest (or the oldest
//     idle one), and only when every connection is busy working is the new one refused
//     with a 503, so accept never fails with EMFILE;
//   - a share of that budget per client address (Limits.MaxConnsPerClient): an address
//     past it makes room among its own connections only, or is refused at once, so a
//     reconnect flood from one address cannot close the connections of the others.
//
// It must not know what the handlers do: routes and their meaning belong to the callers.
package listen
