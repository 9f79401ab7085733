// MetanodeCrypto
