package seal

import (
	"crypto/sha256"
	"encoding/hex"
)

// KeyID returns the key id of a serialized public key: the first 16 hex
// characters of its SHA-256. It never fails. The id is public; it only
// tells the syncer which of its keys a blob was sealed to.
func KeyID(publicKey []byte) string {
	sum := sha256.Sum256(publicKey)
	return hex.EncodeToString(sum[:])[:KIDSize]
}
