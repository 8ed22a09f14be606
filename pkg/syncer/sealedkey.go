package syncer

import (
	"github.com/tokka-dev/tokka/pkg/secret"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// reasonSealedWrong is shown for a client-sealed key that does not open
// under its connection's binding: sealed for another connection id or user,
// altered on the way, or sealed to a key the syncer does not hold.
const reasonSealedWrong = "the key your client sealed does not open for this connection " +
	"(sealed for another connection or user, altered, or sealed to a key Tokka does not have); seal it again and replace the key"

// maxSealedKeyLen bounds a client-sealed key, as the api bounds pasted ones.
const maxSealedKeyLen = 512

// checkSealedKey does for a client-sealed key what the api does for a
// pasted one, on the opened plaintext: visible ASCII, a plausible length, the
// provider's admin-key prefix. It returns why the key is refused (shown to the
// user, never quoting it), or "" when it is fine.
func checkSealedKey(p tokka.Provider, k *secret.Key) string {
	if k.Len() < len(p.KeyPrefix())+8 || k.Len() > maxSealedKeyLen {
		return "the key your client sealed has an implausible length; replace it with an " + string(p) + " admin key"
	}
	for _, b := range k.Bytes() {
		if b <= ' ' || b >= 0x7f {
			return "the key your client sealed contains whitespace or non-ASCII characters; replace it with an " + string(p) + " admin key"
		}
	}
	if !k.HasPrefix(p.KeyPrefix()) {
		return "the key your client sealed is not an " + string(p) + " admin key (it must start with " + p.KeyPrefix() + "); replace it"
	}
	return ""
}
