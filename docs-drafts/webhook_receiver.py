"""A help desk's webhook receiver: verify each delivery, then note it on the ticket.

Run: WEBHOOK_SECRET=whsec_... PORT=8000 python webhook_receiver.py
"""

import os
from http.server import BaseHTTPRequestHandler, HTTPServer

from standardwebhooks import Webhook, WebhookVerificationError

hook = Webhook(os.environ["WEBHOOK_SECRET"])


def post_ticket_note(ticket_url: str, note: str) -> None:
    """Replace with your CRM's API call (e.g. POST {ticket_url}/notes)."""
    print(f"note on {ticket_url}: {note}", flush=True)


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            event = hook.verify(body, dict(self.headers))  # checks signature and time
        except WebhookVerificationError:
            self.send_response(400)
        else:
            envelope = event["data"].get("envelope") or {}
            if envelope.get("ticket_url"):
                note = f"{event['type']}: envelope {envelope['id']} is {envelope['status']}"
                post_ticket_note(envelope["ticket_url"], note)
            self.send_response(204)  # 2xx: delivered (anything else is retried)
        self.end_headers()


HTTPServer(("127.0.0.1", int(os.environ.get("PORT", 8000))), Receiver).serve_forever()
