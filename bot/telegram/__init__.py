"""The Telegram channel: gateway (ingest and wiring), staff (the clinicians' group), send, outbox."""
