"""registry and wechat accounts

Revision ID: 0001
Revises:
Create Date: 2026-11-26 02:27:17.762481
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('places',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('parent_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('policy', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['parent_id'], ['places.id'], name=op.f('fk_places_parent_id_places')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_places')),
    sa.UniqueConstraint('code', name=op.f('uq_places_code'))
    )
    with op.batch_alter_table('places', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_places_parent_id'), ['parent_id'], unique=False)

    op.create_table('units',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('parent_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['parent_id'], ['units.id'], name=op.f('fk_units_parent_id_units')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_units')),
    sa.UniqueConstraint('code', name=op.f('uq_units_code'))
    )
    with op.batch_alter_table('units', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_units_parent_id'), ['parent_id'], unique=False)

    op.create_table('persons',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('person_no', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('category', sa.String(length=16), nullable=False),
    sa.Column('unit_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('id_hash', sa.String(length=64), nullable=False),
    sa.Column('id_cipher', sa.LargeBinary(), nullable=False),
    sa.Column('phone_cipher', sa.LargeBinary(), nullable=True),
    sa.Column('roles', sa.String(length=200), nullable=False),
    sa.Column('responsible_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('home_place_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('locale', sa.String(length=8), nullable=False),
    sa.Column('valid_until', sa.Date(), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['home_place_id'], ['places.id'], name=op.f('fk_persons_home_place_id_places')),
    sa.ForeignKeyConstraint(['responsible_id'], ['persons.id'], name=op.f('fk_persons_responsible_id_persons')),
    sa.ForeignKeyConstraint(['unit_id'], ['units.id'], name=op.f('fk_persons_unit_id_units')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_persons')),
    sa.UniqueConstraint('person_no', name=op.f('uq_persons_person_no'))
    )
    with op.batch_alter_table('persons', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_persons_category'), ['category'], unique=False)
        batch_op.create_index(batch_op.f('ix_persons_home_place_id'), ['home_place_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_persons_id_hash'), ['id_hash'], unique=False)
        batch_op.create_index(batch_op.f('ix_persons_responsible_id'), ['responsible_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_persons_unit_id'), ['unit_id'], unique=False)

    op.create_table('unit_responsibles',
    sa.Column('unit_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('person_no', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['unit_id'], ['units.id'], name=op.f('fk_unit_responsibles_unit_id_units'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('unit_id', 'person_no', name=op.f('pk_unit_responsibles'))
    )
    with op.batch_alter_table('unit_responsibles', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_unit_responsibles_person_no'), ['person_no'], unique=False)

    op.create_table('audit_log',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('action', sa.String(length=40), nullable=False),
    sa.Column('subject_person_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['subject_person_id'], ['persons.id'], name=op.f('fk_audit_log_subject_person_id_persons')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index('ix_audit_log_subject_at', ['subject_person_id', 'at'], unique=False)

    op.create_table('wechat_accounts',
    sa.Column('openid', sa.String(length=64), nullable=False),
    sa.Column('person_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('locale', sa.String(length=8), nullable=True),
    sa.Column('subscribed', sa.Boolean(), nullable=False),
    sa.Column('bound_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['person_id'], ['persons.id'], name=op.f('fk_wechat_accounts_person_id_persons')),
    sa.PrimaryKeyConstraint('openid', name=op.f('pk_wechat_accounts')),
    sa.UniqueConstraint('person_id', name=op.f('uq_wechat_accounts_person_id'))
    )


def downgrade() -> None:
    op.drop_table('wechat_accounts')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_log_subject_at')

    op.drop_table('audit_log')
    with op.batch_alter_table('unit_responsibles', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_unit_responsibles_person_no'))

    op.drop_table('unit_responsibles')
    with op.batch_alter_table('persons', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_persons_unit_id'))
        batch_op.drop_index(batch_op.f('ix_persons_responsible_id'))
        batch_op.drop_index(batch_op.f('ix_persons_id_hash'))
        batch_op.drop_index(batch_op.f('ix_persons_home_place_id'))
        batch_op.drop_index(batch_op.f('ix_persons_category'))

    op.drop_table('persons')
    with op.batch_alter_table('units', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_units_parent_id'))

    op.drop_table('units')
    with op.batch_alter_table('places', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_places_parent_id'))

    op.drop_table('places')
