"""Governance: approvals, promotion, rollback, release and the audit trail, behind one service."""
