// What the console knows: who is signed in, and the tokens shown.

export const state = {
  /** The signed-in user ({id, email, role}), or null. */
  user: null,
  /** Whether the user is an admin of the account. */
  admin: false,
  /** The tokens listed, oldest first. */
  tokens: [],
  /** Credits per day by token id, as filled series. */
  usage: new Map(),
  /** GET /v1/account: the plan, the credit period, what the server can do; null until loaded. */
  account: null,
};

/**
 * Says how credits are counted in the server's period (month, week, day
 * or hour): per as a label's words, hint as a sentence.
 */
export function periodWords(period) {
  switch (period) {
    case 'week':
      return { per: 'per week', this: 'this week', hint: 'Counts from each Monday at 00:00 UTC, then starts again at 0.' };
    case 'day':
      return { per: 'per day', this: 'today', hint: 'Counts from 00:00 UTC each day, then starts again at 0.' };
    case 'hour':
      return { per: 'per hour', this: 'this hour', hint: 'Counts from the start of each hour, then starts again at 0.' };
    case 'month':
      return { per: 'per calendar month', this: 'this month', hint: 'Counts from the 1st of each month (UTC), then starts again at 0.' };
  }
  return { per: 'per period', this: 'this period', hint: '' };
}

/**
 * Reports whether the signed-in user may change everything about a token:
 * its owner may, and admins may for tokens that belong to no one.
 */
export function manages(token) {
  if (token.user_id) {
    return state.user !== null && token.user_id === state.user.id;
  }
  return state.admin;
}
