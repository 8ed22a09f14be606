package tokka

// DefaultResyncDays is how many recent days (today included) the providers
// may still restate when no one says otherwise (SYNC_RESYNC_DAYS): the
// syncer re-reads them on every sync and the api marks them provisional, so
// both binaries take this one number.
const DefaultResyncDays = 3
