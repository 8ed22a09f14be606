package seal

// Parameters are the public sealing parameters a client needs to seal a key
// itself (GET /v1/sealing-key): the key to seal to, its id, the suite, and the
// exact info and AAD encoding Seal uses. Nothing in them is secret.
type Parameters struct {
	KID       string     `json:"kid"`
	PublicKey string     `json:"public_key"`
	Suite     SuiteNames `json:"suite"`
	Info      string     `json:"info"`
	AAD       AADFormat  `json:"aad"`
	Format    string     `json:"sealed_key_format"`
}

// SuiteNames names the HPKE ciphersuite by its RFC 9180 registry names and
// code points, so a client library can check it implements exactly this one.
type SuiteNames struct {
	KEM    string `json:"kem"`
	KEMID  uint16 `json:"kem_id"`
	KDF    string `json:"kdf"`
	KDFID  uint16 `json:"kdf_id"`
	AEAD   string `json:"aead"`
	AEADID uint16 `json:"aead_id"`
}

// AADFormat describes Binding.AAD: the label, then each field in order as a
// 4-byte big-endian length and its UTF-8 bytes.
type AADFormat struct {
	Label    string   `json:"label"`
	Fields   []string `json:"fields"`
	Encoding string   `json:"encoding"`
}

// Parameters returns p's sealing parameters. It never fails.
func (p *PublicKey) Parameters() Parameters {
	kem, kdf, aead := Suite()
	return Parameters{
		KID:       p.kid,
		PublicKey: p.String(),
		Suite: SuiteNames{KEM: "MLKEM768-X25519", KEMID: kem.ID(), KDF: "HKDF-SHA256", KDFID: kdf.ID(),
			AEAD: "AES-256-GCM", AEADID: aead.ID()},
		Info: Info,
		AAD: AADFormat{Label: bindingLabel, Fields: []string{"team_id", "connection_id", "provider"},
			Encoding: "the label's bytes, then each field in order as a 4-byte big-endian length and its UTF-8 bytes"},
		Format: "v2:<kid>:<hex(encapsulated key)>:<hex(ciphertext with tag)>, lowercase hex",
	}
}
