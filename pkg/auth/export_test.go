package auth

// Remembered is how many verified tokens v remembers.
func Remembered(v *Verifier) int {
	v.verified.mu.RLock()
	defer v.verified.mu.RUnlock()
	return len(v.verified.entries)
}

// MaxRemembered is the bound on Remembered.
const MaxRemembered = maxVerified
