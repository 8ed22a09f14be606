package httpapi

import "sync/atomic"

// Drain is the api's shutdown switch. Once started, GET /readyz answers 503
// ("shutting down") so load balancers stop routing new requests here, while
// every route, /readyz's caller included, is still served normally until the
// process stops listening. A nil *Drain never drains.
type Drain struct{ on atomic.Bool }

// Start marks the process as shutting down; calling it again does nothing.
func (d *Drain) Start() { d.on.Store(true) }

// Draining reports whether Start was called.
func (d *Drain) Draining() bool { return d != nil && d.on.Load() }
