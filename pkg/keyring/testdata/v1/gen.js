// Writes vectors.json: blobs in the seed's format (v1), made the way the seed
// made them, so the Go keyring is tested against real Node.js output rather
// than against its own idea of the format.
//
//   node pkg/keyring/testdata/v1/gen.js
//
// Format: hex(iv) ":" hex(authTag) ":" hex(ciphertext), AES-256-GCM, key =
// SHA-256(ENCRYPTION_KEY as UTF-8), random 16-byte IV, no AAD.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');

function encrypt(encryptionKey, plaintext) {
  const key = crypto.createHash('sha256').update(encryptionKey, 'utf8').digest();
  const iv = crypto.randomBytes(16);
  const cipher = crypto.createCipheriv('aes-256-gcm', key, iv);
  const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  const authTag = cipher.getAuthTag();
  return `${iv.toString('hex')}:${authTag.toString('hex')}:${ciphertext.toString('hex')}`;
}

// Test-only keys: never use these anywhere real.
const keys = [
  'test-only-v1-encryption-key-0000000000000000',
  'another test key, with spaces & punctuation!!',
  'ключ-для-тестов-только-🔑-ünïcödé-0123456789',
];

const plaintexts = [
  'x',
  'sk-admin-short',
  'sk-admin-' + 'A1b2C3d4'.repeat(20),
  'sk-ant-admin01-' + 'Zz9_-'.repeat(60) + 'END',
  'clé-ünïcödé-鍵-🔐-key',
];

const vectors = [];
for (const encryptionKey of keys) {
  for (const plaintext of plaintexts) {
    vectors.push({
      encryption_key: encryptionKey,
      plaintext: plaintext,
      blob: encrypt(encryptionKey, plaintext),
    });
  }
}

const out = path.join(__dirname, 'vectors.json');
fs.writeFileSync(out, JSON.stringify(vectors, null, 2) + '\n');
console.log(`wrote ${vectors.length} vectors to ${out}`);
