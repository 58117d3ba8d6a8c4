"""Back to campus: batches, eligibility, applications, approvals by chat, arrival at the gate."""
